"""params.yaml: one schema per section, checked by every stage before it does any work.

Each stage entry point calls ``load_params(path, *keys)`` with the params it reads (the keys its
dvc.yaml entry depends on). A value of the wrong type, out of range, not among the allowed
choices, a missing key or an unknown one (a typo such as ``resnet.lerning_rate``) raises a
``ParamsError`` that the stage prints as one ``error:`` line naming the key, the value and what
is allowed - before any output is touched or any checkpoint moved.

The schema is a table of small rules (``Int``, ``Number``, ``Choice``, ``ListOf``, ``Section``,
``MapOf``, ...) per section, in ``SCHEMA`` below, plus a few checks across keys (``CHECKS``).
Adding a param means adding one row here; tests/test_params.py checks that the committed
params.yaml passes and walks a table of bad values for every section.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
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

    def problem(self, value, key):
        if not isinstance(value, dict):
            return key, f"{key} = {_show(value)}; allowed: {self.describe()}"
        kind = value.get(self.tag)
        if not isinstance(kind, str) or kind not in self.sections:
            return (f"{key}.{self.tag}", f"{key}.{self.tag} = {_show(kind)}; allowed: one of "
                                         f"{', '.join(self.sections)}")
        return self.sections[kind].problem(value, key)


# --------------------------------------------------------------------------------------
# The schema: one Section per params.yaml section
# --------------------------------------------------------------------------------------
MD5 = Text(r"[0-9a-f]{32}", "an md5 hex digest (32 characters 0-9a-f)")
POSITIVE = Int(min=1)
SEED = Int(min=0)
PROBABILITY = Number(min=0, max=1)
EPOCH_LIST = ListOf(Int(min=1))
THREADS = Int(min=0)  # 0: torch's default (all cores)

_LM_COMMON = {
    "emsize": POSITIVE,
    "nhid": POSITIVE,
    "dropout": Number(min=0, max=0.99),
    "tied": Bool(),
    "lr": Number(min=0, min_open=True),
    "optimizer": Choice("sgd", "adamw"),
    "weight_decay": Number(min=0),
    # a model's own value of a wordlm.train setting (the long-context variants' bptt, ...)
    "epochs": POSITIVE,
    "batch_size": POSITIVE,
    "bptt": Int(min=2),
    "eval_context": Int(min=2),
    "eval_stride": POSITIVE,
}
_LM_OPTIONAL = frozenset({"tied", "optimizer", "weight_decay", "epochs", "batch_size", "bptt", "eval_context",
                          "eval_stride"})


def _tied_needs_equal_sizes(m: dict, key: str):
    if m.get("tied") and m["nhid"] != m["emsize"]:
        return f"{key}.tied", f"{key}.tied = true needs nhid == emsize (nhid {m['nhid']}, emsize {m['emsize']})"


def _heads_divide_emsize(m: dict, key: str):
    if m["emsize"] % m["nhead"]:
        return f"{key}.nhead", f"{key}.nhead = {m['nhead']} does not divide emsize {m['emsize']}; allowed: a divisor of it"


_RNN = Section({"type": Choice("LSTM", "GRU", "RNN_TANH", "RNN_RELU"), **_LM_COMMON, "nlayers": POSITIVE},
               _LM_OPTIONAL, _tied_needs_equal_sizes)
LM_MODEL = Tagged("type", {
    **{kind: _RNN for kind in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")},
    "Transformer": Section({"type": Choice("Transformer"), **_LM_COMMON, "nlayers": POSITIVE, "nhead": POSITIVE},
                           _LM_OPTIONAL, _heads_divide_emsize),
    "GCNN": Section({"type": Choice("GCNN"), **_LM_COMMON, "kernel_size": Int(min=2),
                     "dilations": ListOf(POSITIVE, unique=False), "nlayers": POSITIVE},
                    _LM_OPTIONAL | {"dilations", "nlayers"}),
})

SCHEMA: dict[str, Rule] = {
    "devices": Int(min=0),
    "tinyimagenet": Section({
        "source": Either(Choice("sample"), Text(r"(https?|file)://.+", "an http://, https:// or file:// URL")),
        "md5": Optional(MD5),
        "sample": Section({
            "seed": SEED,
            "train_per_class": POSITIVE,
            "val_per_class": POSITIVE,
            "test_images": Int(min=0),
            "grayscale_fraction": PROBABILITY,
            "noise": PROBABILITY,
        }),
    }),
    "resnet": Section({
        "epochs": POSITIVE,
        "batch_size": POSITIVE,
        "lr": Number(min=0, min_open=True),
        "momentum": Number(min=0, max=1),
        "weight_decay": Number(min=0),
        "input_size": Int(min=32),
        "stem": Choice("torchvision", "cifar"),
        "schedule": Choice("constant", "step", "cosine", "onecycle"),
        "warmup_epochs": Number(min=0),
        "step_size": POSITIVE,
        "gamma": Number(min=0, max=1, min_open=True),
        "label_smoothing": Number(min=0, max=0.99),
        "seed": SEED,
        "precision": Choice("auto", "fp32", "bf16", "fp16"),
        "sync_bn": Bool(),
        "deterministic": Bool(),
        "eval_batch_size": POSITIVE,
        "print_freq": POSITIVE,
        "keep_epochs": Either(Choice("all"), ListOf(Int(min=1), min_len=0)),  # the last epoch is always kept
        "compile": Choice(False, "default", "reduce-overhead", "max-autotune"),
        "launch": Section({
            "nnodes": POSITIVE,
            "rdzv_endpoint": Optional(Text(r"[^\s:]+:\d+", "host:port")),
            "backend": Choice("auto", "nccl", "gloo"),
        }),
    }, check=lambda r, key: None if r["warmup_epochs"] <= r["epochs"] else (
        f"{key}.warmup_epochs", f"{key}.warmup_epochs = {r['warmup_epochs']} is longer than {key}.epochs = "
                                f"{r['epochs']}; allowed: 0..{r['epochs']}")),
    "resnet_runs": MapOf(Section({
        "gpus": Int(min=0),
        "procs": POSITIVE,
        "needs": Text(r"[A-Za-z0-9_.]+", "the params key the variant depends on (devices, or resnet_runs.<name>)"),
    }, frozenset({"procs"}))),
    "eval": Section({
        "run": Text(r"[A-Za-z0-9_]+", "auto or a key of resnet_runs"),
        "epochs": Either(Choice("all"), EPOCH_LIST),
        "batch_size": POSITIVE,
    }),
    "diff": Section({
        "a": Optional(Int(min=1)),
        "b": Optional(Int(min=1)),
        "grid_images": Int(min=0),
    }),
    "wordlm": Section({
        "corpus": Choice("sample", "data"),
        "data_md5": MD5,
        "sample": Section({
            "seed": SEED,
            "train_words": Int(min=100),
            "valid_words": Int(min=100),
            "test_words": Int(min=100),
            "topics": POSITIVE,
            "topic_words": POSITIVE,
            "long_range": Bool(),
            "unk_min_count": POSITIVE,
        }),
        "train": Section({
            "epochs": POSITIVE,
            "batch_size": POSITIVE,
            "bptt": Int(min=2),
            "clip": Number(min=0, min_open=True),
            "seed": SEED,
            "log_interval": POSITIVE,
            "eval_batch_size": POSITIVE,
            "eval_context": Int(min=2),
            "eval_stride": POSITIVE,
            "threads": THREADS,
        }, check=lambda t, key: None if t["eval_stride"] < t["eval_context"] else (
            f"{key}.eval_stride", f"{key}.eval_stride = {t['eval_stride']} must be smaller than "
                                  f"{key}.eval_context = {t['eval_context']}")),
        "models": MapOf(LM_MODEL),
    }),
    "generate": Section({
        "model": Text(r"[A-Za-z0-9_]+", "a key of wordlm.models"),
        "words": POSITIVE,
        "temperature": Number(min=1e-3),
        "seed": SEED,
        "prompt": Optional(Text()),
    }),
    "context_probe": Section({
        "split": Choice("train", "valid", "test"),
        "targets": Int(min=10),
        "max_context": Int(min=2),
        "reference_context": Int(min=2),
        "distances": ListOf(POSITIVE),
        "tolerance": Number(min=0, max=1, min_open=True),
        "bootstrap": Int(min=10),
        "seed": SEED,
        "batch": POSITIVE,
        "threads": THREADS,
        "models": Optional(ListOf(Text(r"[A-Za-z0-9_]+", "a key of wordlm.models"))),
    }, frozenset({"models"})),
    "lm_cost": Section({
        "models": ListOf(Text(r"[A-Za-z0-9_]+", "a key of wordlm.models"), min_len=2),
        "lengths": ListOf(Int(min=2), min_len=3),  # an exponent needs 3 lengths to fit
        "repeats": POSITIVE,
        "seed": SEED,
        "ntoken": Int(min=2),
        "threads": THREADS,
    }),
    "claims": Section({
        "bootstrap": Int(min=100),
        "seed": SEED,
    }),
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
                known = f" (it has: {', '.join(map(str, _get(params, parent)))})" if parent else ""
            except (KeyError, TypeError, AttributeError):
                known = ""
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


def load_params(path: str | Path = "params.yaml", *keys: str) -> dict[str, Any]:
    """Read params.yaml and validate ``keys`` (all sections when none are given)."""
    params = read_params(path)
    validate(params, list(keys), str(path))
    return params
