"""params.yaml: read as DVC reads it, one typed section each, checked by every stage before it does any work.

Each stage entry point calls ``load_params(path, *keys)`` with the params it reads (the keys its
dvc.yaml entry depends on) and hands the library the typed objects it gets back (``ResnetParams``,
``LMTrainParams``, ...: one frozen dataclass per section, each field with its rule and, for a key
that may be absent, its default). A value of the wrong type, out of range, not among the allowed
choices, a missing key or an unknown one (a typo such as ``resnet.lerning_rate``) raises a
``ParamsError`` that the stage prints as one ``error:`` line naming the key, the value and what
is allowed - before any output is touched or any checkpoint moved.

The rules are small (``Int``, ``Number``, ``Choice``, ``ListOf``, ``Section``, ``MapOf``, ...); each
section's dataclass lists its own, ``SCHEMA`` maps params.yaml's sections to them, and ``CHECKS``
holds the few checks across keys. Adding a param means adding one field here; tests/test_params.py
checks that the committed params.yaml passes and walks a table of bad values for every section.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from dlreport.errors import PipelineError


class ParamsError(PipelineError):
    """A params.yaml value the pipeline cannot use."""


def _show(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 80 else text[:77] + "..."


class Rule:
    """One allowed shape of a value. ``problem`` returns None when ``value`` fits, else what is
    wrong as ``(key, message)`` - key is the dotted key where the problem is."""

    def describe(self) -> str:
        raise NotImplementedError

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        return None if self.fits(value) else (key, f"{key} = {_show(value)}; allowed: {self.describe()}")

    def fits(self, value: Any) -> bool:
        raise NotImplementedError

    def build(self, value: Any) -> Any:
        """The typed value of a valid ``value`` (a section's dataclass; else the value itself)."""
        return value


def _bounds(low, high, low_open=False) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return " and ".join(parts)


@dataclass(frozen=True)
class Int(Rule):
    min: int | None = None
    max: int | None = None

    def describe(self) -> str:
        bounds = _bounds(self.min, self.max)
        return f"an integer {bounds}".strip()

    def fits(self, value) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and (self.min is None or value >= self.min) and (self.max is None or value <= self.max))


@dataclass(frozen=True)
class Number(Rule):
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # True: value > min, not >=

    def describe(self) -> str:
        return f"a number {_bounds(self.min, self.max, self.min_open)}".strip()

    def fits(self, value) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            return False
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        return self.max is None or value <= self.max


@dataclass(frozen=True)
class Bool(Rule):
    def describe(self) -> str:
        return "true or false"

    def fits(self, value) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Choice(Rule):
    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", values)

    def describe(self) -> str:
        shown = [_show(v) for v in self.values]
        return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)

    def fits(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        found = super().problem(value, key)
        close = difflib.get_close_matches(value, [v for v in self.values if isinstance(v, str)], n=1) \
            if found and isinstance(value, str) else []
        return (key, f"{found[1]} (did you mean {close[0]}?)") if close else found


@dataclass(frozen=True)
class Text(Rule):
    """A string matching ``pattern`` (a full match), described as ``what``."""
    pattern: str = r".+"
    what: str = "a non-empty string"

    def describe(self) -> str:
        return self.what

    def fits(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value, re.DOTALL) is not None


@dataclass(frozen=True)
class Either(Rule):
    """Any of several rules (e.g. ``"all"`` or a list of epochs)."""
    rules: tuple

    def __init__(self, *rules):
        object.__setattr__(self, "rules", rules)

    def describe(self) -> str:
        return " or ".join(r.describe() for r in self.rules)

    def fits(self, value) -> bool:
        return any(r.problem(value, "") is None for r in self.rules)


def Optional(rule: Rule) -> Rule:  # noqa: N802 - reads like a type in the schema table
    return Either(Choice(None), rule)


@dataclass(frozen=True)
class ListOf(Rule):
    item: Rule
    min_len: int = 1
    unique: bool = True

    def build(self, value: list) -> list:
        return [self.item.build(item) for item in value]

    def describe(self) -> str:
        return (f"a list of {'distinct ' if self.unique else ''}values, each {self.item.describe()}"
                + (f", at least {self.min_len}" if self.min_len > 1 else ""))

    def problem(self, value, key):
        if not isinstance(value, list) or len(value) < self.min_len:
            return key, f"{key} = {_show(value)}; allowed: {self.describe()}"
        if self.unique and len({_show(v) for v in value}) != len(value):
            return key, f"{key} = {_show(value)} repeats a value; allowed: {self.describe()}"
        for i, item in enumerate(value):
            if self.item.problem(item, f"{key}[{i}]"):
                return key, f"{key} = {_show(value)}: item {_show(item)} is not allowed; each must be {self.item.describe()}"
        return None


@dataclass(frozen=True)
class Section(Rule):
    """A mapping with known keys; every key is required unless listed in ``optional``."""
    fields: dict
    optional: frozenset = field(default_factory=frozenset)
    # A check across this section's keys, run once each key is valid: (value, key) -> (key, message) or None
    check: Callable[[dict, str], tuple[str, str] | None] | None = None
    cls: type | None = None  # the dataclass a valid mapping becomes

    @classmethod
    def of(cls, typed: type, check=None) -> "Section":
        """The rule of a section dataclass: its fields' rules; a field with a default may be absent."""
        fields = {f.name: f.metadata["rule"] for f in dataclasses.fields(typed)}
        optional = frozenset(f.name for f in dataclasses.fields(typed) if f.default is not dataclasses.MISSING)
        return cls(fields, optional, check, typed)

    def build(self, value: dict) -> Any:
        built = {name: rule.build(value[name]) for name, rule in self.fields.items() if name in value}
        return self.cls(**built) if self.cls else built

    def describe(self) -> str:
        return "a mapping with keys " + ", ".join(self.fields)

    def problem(self, value, key):
        if not isinstance(value, dict):
            return key, f"{key} = {_show(value)}; allowed: {self.describe()}"
        for name in value:
            if name not in self.fields:
                close = difflib.get_close_matches(str(name), list(self.fields), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                return f"{key}.{name}", (f"{key}.{name} is not a known key of {key}{hint}; "
                                         f"known keys: {', '.join(self.fields)}")
        for name, rule in self.fields.items():
            sub = f"{key}.{name}" if key else name
            if name not in value:
                if name in self.optional:
                    continue
                return sub, f"{sub} is missing; set it in params.yaml to {rule.describe()}"
            found = rule.problem(value[name], sub)
            if found:
                return found
        return self.check(value, key) if self.check else None


@dataclass(frozen=True)
class MapOf(Rule):
    """A mapping from names (``[A-Za-z0-9_]+``: they become stage names such as
    train_wordlm@<name>) to values of one rule."""
    item: Rule
    min_len: int = 1

    def describe(self) -> str:
        return f"a mapping of names to entries ({self.item.describe()})"

    def build(self, value: dict) -> dict:
        return {name: self.item.build(item) for name, item in value.items()}

    def problem(self, value, key):
        if not isinstance(value, dict) or len(value) < self.min_len:
            return key, f"{key} = {_show(value)}; allowed: a mapping with at least {self.min_len} entry"
        for name, item in value.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                return key, f"{key}: the name {_show(name)} is not allowed; use letters, digits and _"
            found = self.item.problem(item, f"{key}.{name}")
            if found:
                return found
        return None


@dataclass(frozen=True)
class Tagged(Rule):
    """A mapping whose ``tag`` key picks the section that applies (e.g. a model's ``type``)."""
    tag: str
    sections: dict

    def describe(self) -> str:
        return f"a mapping whose {self.tag} is one of {', '.join(self.sections)}"

    def build(self, value: dict) -> Any:
        return self.sections[value[self.tag]].build(value)

    def problem(self, value, key):
        if not isinstance(value, dict):
            return key, f"{key} = {_show(value)}; allowed: {self.describe()}"
        kind = value.get(self.tag)
        if not isinstance(kind, str) or kind not in self.sections:
            return (f"{key}.{self.tag}", f"{key}.{self.tag} = {_show(kind)}; allowed: one of "
                                         f"{', '.join(self.sections)}")
        return self.sections[kind].problem(value, key)


# --------------------------------------------------------------------------------------
# The schema: one typed section per params.yaml section
# --------------------------------------------------------------------------------------
# Each section is a frozen dataclass whose fields carry their rule (what params.yaml may hold) and,
# for a key that may be left out, its default - the one place a default lives. ``Section.of`` turns
# a dataclass into the rule that validates it; ``build`` turns a validated value into the object.
MD5 = Text(r"[0-9a-f]{32}", "an md5 hex digest (32 characters 0-9a-f)")
POSITIVE = Int(min=1)
SEED = Int(min=0)
PROBABILITY = Number(min=0, max=1)
EPOCH_LIST = ListOf(Int(min=1))
THREADS = Int(min=0)  # 0: torch's default (all cores)
NAME = r"[A-Za-z0-9_]+"
LM_NAMES = ListOf(Text(NAME, "a key of wordlm.models"))

_NO_DEFAULT = object()


def param(rule: Rule, default: Any = _NO_DEFAULT) -> Any:
    """A field of a params section: its rule, and (a key that may be absent) its default."""
    if default is _NO_DEFAULT:
        return field(metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


def section(check: Callable[[dict, str], tuple[str, str] | None] | None = None):
    """Make a class a frozen, keyword-only dataclass and give it ``RULE``, its Section."""
    def make(cls):
        cls = dataclass(frozen=True, kw_only=True)(cls)
        cls.RULE = Section.of(cls, check)
        return cls
    return make


@section()
class SampleImagesParams:
    seed: int = param(SEED)
    train_per_class: int = param(POSITIVE)
    val_per_class: int = param(POSITIVE)
    test_images: int = param(Int(min=0))
    grayscale_fraction: float = param(PROBABILITY)
    noise: float = param(PROBABILITY)


@section()
class TinyImageNetParams:
    source: str = param(Either(Choice("sample"), Text(r"(https?|file)://.+", "an http://, https:// or file:// URL")))
    md5: str | None = param(Optional(MD5))
    sample: SampleImagesParams = param(SampleImagesParams.RULE)


@section()
class LaunchParams:
    nnodes: int = param(POSITIVE)
    rdzv_endpoint: str | None = param(Optional(Text(r"[^\s:]+:\d+", "host:port")))
    backend: str = param(Choice("auto", "nccl", "gloo"))


@section(check=lambda r, key: None if r["warmup_epochs"] <= r["epochs"] else (
    f"{key}.warmup_epochs", f"{key}.warmup_epochs = {r['warmup_epochs']} is longer than {key}.epochs = "
                            f"{r['epochs']}; allowed: 0..{r['epochs']}"))
class ResnetParams:
    """params.yaml `resnet`: the training recipe of every train_resnet variant, and how they launch."""
    epochs: int = param(POSITIVE)
    batch_size: int = param(POSITIVE)
    lr: float = param(Number(min=0, min_open=True))
    momentum: float = param(Number(min=0, max=1))
    weight_decay: float = param(Number(min=0))
    input_size: int = param(Int(min=32))
    stem: str = param(Choice("torchvision", "cifar"))
    schedule: str = param(Choice("constant", "step", "cosine", "onecycle"))
    warmup_epochs: float = param(Number(min=0))
    step_size: int = param(POSITIVE)
    gamma: float = param(Number(min=0, max=1, min_open=True))
    label_smoothing: float = param(Number(min=0, max=0.99))
    seed: int = param(SEED)
    precision: str = param(Choice("auto", "fp32", "bf16", "fp16"))
    sync_bn: bool = param(Bool())
    deterministic: bool = param(Bool())  # deterministic cuDNN/cuBLAS kernels (devices.configure_kernels)
    eval_batch_size: int = param(POSITIVE)
    print_freq: int = param(POSITIVE)
    keep_epochs: str | list[int] = param(Either(Choice("all"), ListOf(Int(min=1), min_len=0)))  # the last: always
    compile: bool | str = param(Choice(False, "default", "reduce-overhead", "max-autotune"))
    launch: LaunchParams = param(LaunchParams.RULE)

    def recipe(self) -> dict:
        """The recipe as a checkpoint records it: every key but the launch settings."""
        return {k: v for k, v in asdict(self).items() if k != "launch"}


@section()
class ResnetRunParams:
    """One train_resnet variant (resnet_runs.<name>): gpus 0 trains on the CPU with ``procs`` processes."""
    gpus: int = param(Int(min=0))
    procs: int = param(POSITIVE, 1)
    needs: str = param(Text(r"[A-Za-z0-9_.]+", "the params key the variant depends on (devices, or resnet_runs.<name>)"))


@section()
class EvalParams:
    run: str = param(Text(NAME, "auto or a key of resnet_runs"))
    epochs: str | list[int] = param(Either(Choice("all"), EPOCH_LIST))
    batch_size: int = param(POSITIVE)


@section()
class DiffParams:
    a: int | None = param(Optional(Int(min=1)))   # None: the first evaluated epoch
    b: int | None = param(Optional(Int(min=1)))   # None: the last
    grid_images: int = param(Int(min=0))


@section()
class SampleCorpusParams:
    seed: int = param(SEED)
    train_words: int = param(Int(min=100))
    valid_words: int = param(Int(min=100))
    test_words: int = param(Int(min=100))
    topics: int = param(POSITIVE)
    topic_words: int = param(POSITIVE)
    long_range: bool = param(Bool())
    unk_min_count: int = param(POSITIVE)


@section(check=lambda t, key: None if t["eval_stride"] < t["eval_context"] else (
    f"{key}.eval_stride", f"{key}.eval_stride = {t['eval_stride']} must be smaller than "
                          f"{key}.eval_context = {t['eval_context']}"))
class LMTrainParams:
    """params.yaml `wordlm.train`: the settings every language model shares unless its entry sets its own."""
    epochs: int = param(POSITIVE)
    batch_size: int = param(POSITIVE)
    bptt: int = param(Int(min=2))
    clip: float = param(Number(min=0, min_open=True))
    seed: int = param(SEED)
    log_interval: int = param(POSITIVE)
    eval_batch_size: int = param(POSITIVE)
    eval_context: int = param(Int(min=2))
    eval_stride: int = param(POSITIVE)
    threads: int = param(THREADS)
    # the decoder's matrix products (most of a step's FLOPs): auto = bf16 on CPUs with native bf16
    precision: str = param(Choice("auto", "fp32", "bf16"), "auto")


# Settings of wordlm.train that one model entry may set for itself (None: wordlm.train's).
MODEL_OVERRIDES = ("epochs", "batch_size", "bptt", "eval_context", "eval_stride")


@dataclass(frozen=True, kw_only=True)
class LMModelParams:
    """What every wordlm.models entry has (fields in the order params.yaml's entries list them)."""
    type: str = param(Text())
    emsize: int = param(POSITIVE)
    nhid: int = param(POSITIVE)
    dropout: float = param(Number(min=0, max=0.99))
    tied: bool = param(Bool(), False)
    lr: float = param(Number(min=0, min_open=True))
    optimizer: str = param(Choice("sgd", "adamw"), "sgd")
    weight_decay: float = param(Number(min=0), 0.01)  # AdamW's; SGD (the example's) uses none
    epochs: int | None = param(POSITIVE, None)
    batch_size: int | None = param(POSITIVE, None)
    bptt: int | None = param(Int(min=2), None)
    eval_context: int | None = param(Int(min=2), None)
    eval_stride: int | None = param(POSITIVE, None)

    def training(self, shared: LMTrainParams) -> LMTrainParams:
        """wordlm.train with this entry's own values of MODEL_OVERRIDES."""
        return replace(shared, **{k: getattr(self, k) for k in MODEL_OVERRIDES if getattr(self, k) is not None})


def _tied_needs_equal_sizes(m: dict, key: str):
    if m.get("tied") and m["nhid"] != m["emsize"]:
        return f"{key}.tied", f"{key}.tied = true needs nhid == emsize (nhid {m['nhid']}, emsize {m['emsize']})"


def _heads_divide_emsize(m: dict, key: str):
    if m["emsize"] % m["nhead"]:
        return f"{key}.nhead", f"{key}.nhead = {m['nhead']} does not divide emsize {m['emsize']}; allowed: a divisor of it"


RNN_TYPES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")


@section(check=_tied_needs_equal_sizes)
class RNNParams(LMModelParams):
    type: str = param(Choice(*RNN_TYPES))
    nlayers: int = param(POSITIVE)


@section(check=_heads_divide_emsize)
class TransformerParams(LMModelParams):
    type: str = param(Choice("Transformer"))
    nlayers: int = param(POSITIVE)
    nhead: int = param(POSITIVE)


@section()
class GCNNParams(LMModelParams):
    type: str = param(Choice("GCNN"))
    kernel_size: int = param(Int(min=2))
    dilations: list[int] | None = param(ListOf(POSITIVE, unique=False), None)  # None: nlayers layers of dilation 1
    nlayers: int = param(POSITIVE, 4)

    def layer_dilations(self) -> list[int]:
        return list(self.dilations) if self.dilations else [1] * self.nlayers


LM_MODEL = Tagged("type", {**{kind: RNNParams.RULE for kind in RNN_TYPES},
                           "Transformer": TransformerParams.RULE, "GCNN": GCNNParams.RULE})


@section()
class WordLMParams:
    corpus: str = param(Choice("sample", "data", "folder"))
    # corpus=folder: the folder of train.txt, valid.txt and test.txt (a dep of prepare_corpus in dvc.yaml)
    folder: str = param(Text(r"(?![A-Za-z][A-Za-z0-9+.-]+://)\S(.*\S)?",
                             "a local folder path, relative to the project root or absolute"))
    data_md5: str = param(MD5)
    sample: SampleCorpusParams = param(SampleCorpusParams.RULE)
    train: LMTrainParams = param(LMTrainParams.RULE)
    models: dict[str, LMModelParams] = param(MapOf(LM_MODEL))


@section()
class GenerateParams:
    model: str = param(Text(NAME, "a key of wordlm.models"))
    words: int = param(POSITIVE)
    temperature: float = param(Number(min=1e-3))
    seed: int = param(SEED)
    prompt: str | None = param(Optional(Text()))


@section()
class ContextProbeParams:
    split: str = param(Choice("train", "valid", "test"))
    targets: int = param(Int(min=10))
    max_context: int = param(Int(min=2))
    reference_context: int = param(Int(min=2))
    distances: list[int] = param(ListOf(POSITIVE))
    tolerance: float = param(Number(min=0, max=1, min_open=True))
    bootstrap: int = param(Int(min=10))
    seed: int = param(SEED)
    batch: int = param(POSITIVE)
    threads: int = param(THREADS)
    models: list[str] | None = param(Optional(LM_NAMES), None)  # None: every model of wordlm.models


@section()
class LMCostParams:
    models: list[str] = param(ListOf(Text(NAME, "a key of wordlm.models"), min_len=2))
    lengths: list[int] = param(ListOf(Int(min=2), min_len=3))  # an exponent needs 3 lengths to fit
    repeats: int = param(POSITIVE)
    seed: int = param(SEED)
    ntoken: int = param(Int(min=2))
    threads: int = param(THREADS)


@section()
class ClaimsParams:
    bootstrap: int = param(Int(min=100))
    seed: int = param(SEED)


SCHEMA: dict[str, Rule] = {
    "devices": Int(min=0),
    "tinyimagenet": TinyImageNetParams.RULE,
    "resnet": ResnetParams.RULE,
    "resnet_runs": MapOf(ResnetRunParams.RULE),
    "eval": EvalParams.RULE,
    "diff": DiffParams.RULE,
    "wordlm": WordLMParams.RULE,
    "generate": GenerateParams.RULE,
    "context_probe": ContextProbeParams.RULE,
    "lm_cost": LMCostParams.RULE,
    "claims": ClaimsParams.RULE,
}


# --------------------------------------------------------------------------------------
# Checks across keys: (the keys they read, the check). A check runs when a stage validates
# any of its keys; it returns (key, message) or None.
# --------------------------------------------------------------------------------------
def _get(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


def _eval_run_is_a_variant(p):
    run = p["eval"]["run"]
    if run != "auto" and run not in p["resnet_runs"]:
        return "eval.run", f"eval.run = {run}; allowed: auto or a key of resnet_runs ({', '.join(p['resnet_runs'])})"


def _diff_epochs_are_evaluated(p):
    epochs = p["eval"]["epochs"]
    for name in ("a", "b"):
        epoch = p["diff"][name]
        if epoch is not None and epochs != "all" and epoch not in epochs:
            return (f"diff.{name}", f"diff.{name} = {epoch} is not among eval.epochs {_show(epochs)}; "
                                    f"allowed: null (first/last evaluated epoch) or one of eval.epochs")


def _eval_epochs_within_training(p):
    epochs, trained = p["eval"]["epochs"], p["resnet"]["epochs"]
    if epochs != "all" and max(epochs) > trained:
        return ("eval.epochs", f"eval.epochs = {_show(epochs)} asks for epoch {max(epochs)}, but resnet.epochs "
                               f"= {trained}; allowed: epochs 1..{trained}, or all")


def _evaluated_epochs_keep_weights(p):
    epochs, r = p["eval"]["epochs"], p["resnet"]
    if epochs == "all" or r["keep_epochs"] == "all":
        return None
    dropped = [e for e in epochs if e not in r["keep_epochs"] and e != r["epochs"]]
    if dropped:
        return ("resnet.keep_epochs", f"resnet.keep_epochs = {_show(r['keep_epochs'])} drops the weights of epoch(s) "
                                      f"{', '.join(map(str, dropped))}, which eval.epochs = {_show(epochs)} evaluates; "
                                      f"allowed: all, or a list that includes every epoch of eval.epochs")








def _generate_model_is_trained(p):
    model, models = p["generate"]["model"], p["wordlm"]["models"]
    if model not in models:
        return "generate.model", f"generate.model = {model}; allowed: a key of wordlm.models ({', '.join(models)})"


def _probe_models_are_trained(p):
    chosen, models = p["context_probe"].get("models"), p["wordlm"]["models"]
    for name in chosen or []:
        if name not in models:
            return ("context_probe.models", f"context_probe.models lists {name}; allowed: keys of wordlm.models "
                                            f"({', '.join(models)})")


def _probe_distances_within_context(p):
    c = p["context_probe"]
    if not any(d < c["reference_context"] for d in c["distances"]):
        return ("context_probe.distances", f"context_probe.distances = {_show(c['distances'])} has no distance "
                                           f"below reference_context = {c['reference_context']}")


def _lm_cost_models(p):
    chosen, models = p["lm_cost"]["models"], p["wordlm"]["models"]
    for name in chosen:
        if name not in models:
            return "lm_cost.models", f"lm_cost.models lists {name}; allowed: keys of wordlm.models ({', '.join(models)})"
    if not any(models[name].get("type") == "Transformer" for name in chosen):
        return ("lm_cost.models", f"lm_cost.models = {_show(chosen)} names no Transformer; allowed: keys of "
                                  f"wordlm.models including one of type Transformer (its attention is what is fitted)")


def _lm_eval_windows(p):
    train = p["wordlm"]["train"]
    for name, m in p["wordlm"]["models"].items():
        context, stride = m.get("eval_context", train["eval_context"]), m.get("eval_stride", train["eval_stride"])
        if stride >= context:
            return (f"wordlm.models.{name}.eval_stride", f"wordlm.models.{name}: eval_stride {stride} must be smaller "
                                                         f"than eval_context {context} (its own, or wordlm.train's)")


# A check runs in the stages that validate one of its keys - except where ``STAGE_OF`` names the one
# key whose stage needs it: eval.epochs beyond resnet.epochs stops eval_epochs (the cheap stage to
# re-run), not the training of a shorter run.
CHECKS: list[tuple[tuple[str, ...], Callable[[dict], tuple[str, str] | None]]] = [
    (("eval.run", "resnet_runs"), _eval_run_is_a_variant),
    (("diff", "eval.epochs"), _diff_epochs_are_evaluated),
    (("eval.epochs", "resnet.epochs"), _eval_epochs_within_training),
    (("resnet.keep_epochs", "eval.epochs", "resnet.epochs"), _evaluated_epochs_keep_weights),
    (("generate.model", "wordlm.models"), _generate_model_is_trained),
    (("context_probe.models", "wordlm.models"), _probe_models_are_trained),
    (("context_probe.distances", "context_probe.reference_context"), _probe_distances_within_context),
    (("wordlm.models", "wordlm.train"), _lm_eval_windows),
    (("lm_cost", "wordlm.models"), _lm_cost_models),
]
STAGE_OF = {_eval_epochs_within_training: "eval.epochs"}


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------
def rule_for(dotted: str) -> Rule:
    """The schema rule for a dotted key (``resnet``, ``resnet.lr``, ``wordlm.models.lstm``)."""
    parts = dotted.split(".")
    rule = SCHEMA.get(parts[0])
    for part in parts[1:]:
        if isinstance(rule, Section) and part in rule.fields:
            rule = rule.fields[part]
        elif isinstance(rule, MapOf):
            rule = rule.item
        else:
            rule = None
        if rule is None:
            break
    if rule is None:
        raise KeyError(f"{dotted} is not in the params schema (dlreport/params.py)")
    return rule


def _covers(validated: list[str], key: str) -> bool:
    """Whether one of the validated keys is ``key`` or contains it (or lies inside it)."""
    return any(key == v or key.startswith(v + ".") or v.startswith(key + ".") for v in validated)


def validate(params: Any, keys: list[str], source: str = "params.yaml") -> None:
    """Check ``keys`` (dotted; ``[]`` = every section) of ``params`` against the schema."""
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, found {_show(params)}. "
                          f"Restore it with: git checkout {source}")
    keys = list(keys) or list(SCHEMA)
    for key in keys:
        try:
            value = _get(params, key)
        except (KeyError, TypeError):
            parent, _, name = key.rpartition(".")
            try:
                has = list(map(str, _get(params, parent))) if parent else []
            except (KeyError, TypeError, AttributeError):
                has = []
            close = difflib.get_close_matches(name, has, n=1)
            known = f" (it has: {', '.join(has)}" + (f"; did you mean {parent}.{close[0]}?)" if close else ")") if has else ""
            raise ParamsError(f"{source}: {key} is missing{known}; set it to {rule_for(key).describe()}") from None
        found = rule_for(key).problem(value, key)
        if found:
            raise ParamsError(f"{source}: {found[1]}")
    for reads, check in CHECKS:
        if not any(_covers(keys, k) for k in ((STAGE_OF[check],) if check in STAGE_OF else reads)):
            continue
        try:  # a check judges only valid keys; the stages that read the others report them
            if any(rule_for(k).problem(_get(params, k), k) for k in reads):
                continue
        except (KeyError, TypeError):
            continue
        found = check(params)
        if found:
            raise ParamsError(f"{source}: {found[1]}")


def read_yaml(text: str) -> Any:
    """YAML as DVC reads params.yaml and dvc.lock: ruamel.yaml's safe loader, YAML 1.2 - the call
    DVC's own reader makes (dvc.utils.serialize.parse_yaml). So `yes`, `on`, `off` and `1:30` are
    strings, `010` is 10 and `1e-4` a number, as in dvc.lock, where PyYAML (YAML 1.1) would read
    true, true, false, 90, 8 and the string "1e-4". An empty file is an empty mapping, as for DVC."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text) or {}


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml as DVC reads it (``read_yaml``), not yet validated; every read of params goes
    through here."""
    from ruamel.yaml import YAMLError

    path = Path(path)
    try:
        return read_yaml(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file. Run the stage from the project folder "
                          f"(or pass --params).") from None
    except YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ParamsError(f"{path}: not valid YAML{line}. Fix it, or restore it with: "
                          f"git checkout {path}") from None


def lm_model(record: dict) -> LMModelParams:
    """A wordlm.models entry from a record of one (a train_wordlm checkpoint's config, whose other
    keys are ignored)."""
    return LM_MODEL.build(record)


class Params:
    """The params a stage validated, typed: ``params[key]`` for each dotted key it asked for
    (``params["resnet"]`` a ResnetParams, ``params["wordlm.models.lstm"]`` an RNNParams, ``params["devices"]``
    an int); ``raw`` is the whole file as DVC reads it."""

    def __init__(self, raw: dict, keys: list[str]):
        self.raw = raw
        self._typed = {key: rule_for(key).build(_get(raw, key)) for key in keys}

    def __getitem__(self, key: str) -> Any:
        return self._typed[key]

    def __contains__(self, key: str) -> bool:
        return key in self._typed


def load_params(path: str | Path = "params.yaml", *keys: str) -> Params:
    """Read params.yaml, validate ``keys`` (every section when none are given) and type them: once per
    stage, before it does any work."""
    raw = read_params(path)
    validate(raw, list(keys), str(path))
    return Params(raw, list(keys) or list(SCHEMA))


def parse(key: str, value: Any) -> Any:
    """One validated, typed value of a params key (``parse("resnet", {...})``): what a stage gets for
    ``key``, for code that makes its params itself (tests, benchmarks)."""
    found = rule_for(key).problem(value, key)
    if found:
        raise ParamsError(found[1])
    return rule_for(key).build(value)
