"""params.yaml: read as DVC reads it, one typed section each, checked by every stage before it does any work.

Each section is a frozen pydantic dataclass (``ResnetParams``, ``LMTrainParams``, ...): its fields'
types and constraints say what params.yaml may hold, a field with a default may be left out, and
unknown keys (a typo such as ``resnet.lerning_rate``) are refused. ``ParamsFile`` gathers the
sections; its JSON Schema is params.schema.json, which editors use to complete and check params.yaml
(``python -m dlreport.params`` writes it; tests/test_params.py checks it is current).

Each stage entry point calls ``load_params(path, *keys)`` with the params it reads (the keys its
dvc.yaml entry depends on) and hands the library the typed objects it gets back. A bad value raises
a ``ParamsError`` that the stage prints as one ``error:`` line naming the key, the value and what is
allowed (worded from the schema) - before any output is touched or any checkpoint moved. ``CHECKS``
holds the few checks across sections.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import typing
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import yaml
from pydantic import (AfterValidator, ConfigDict, Field, Strict, StrictBool, StringConstraints, TypeAdapter,
                      ValidationError, WrapValidator, model_validator)
from pydantic.dataclasses import dataclass

from dlreport.errors import PipelineError

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "params.schema.json"


class ParamsError(PipelineError):
    """A params.yaml value the pipeline cannot use."""


def _show(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------
# Value types. Strict: `yes`, 1 or "3" are not true, true or 3 (YAML 1.2 reads yes as a string).
# --------------------------------------------------------------------------------------
def _as_written(value, handler):  # lr: 20 stays the int 20 (as in dvc.lock and the report), not 20.0
    checked = handler(value)
    return value if type(value) is int else checked


def _exactly(value, handler):  # a Literal takes 0 for false; `compile: 0` is not one of the choices
    checked = handler(value)
    if type(checked) is not type(value):
        raise ValueError(f"{{key}} = {_show(value)}; allowed: {{allowed}}")
    return checked


Int = Annotated[int, Strict()]


def Number(**bounds):  # noqa: N802 - a type; its bounds inside the validator that keeps ints, so the schema has them
    return Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds), WrapValidator(_as_written)]


Bool = StrictBool
POSITIVE = Annotated[Int, Field(ge=1)]
SEED = Annotated[Int, Field(ge=0)]
THREADS = Annotated[Int, Field(ge=0)]  # 0: torch's default (all cores)
PROBABILITY = Number(ge=0, le=1)


def Text(pattern: str | None = None, what: str = "a non-empty string"):  # noqa: N802 - a type
    """A string (matching ``pattern`` whole), described as ``what`` in errors and editors."""
    return Annotated[str, Strict(), StringConstraints(min_length=1, pattern=pattern and f"^(?:{pattern})$"),
                     Field(description=what)]


def _distinct(items: list) -> list:
    if len({_show(i) for i in items}) != len(items):
        raise ValueError(f"{{key}} = {_show(items)} repeats a value; allowed: {{allowed}}")
    return items


def Distinct(item, min_length: int = 1):  # noqa: N802 - a type
    """A list of distinct values (epochs, lengths, model names)."""
    return Annotated[list[item], Field(min_length=min_length, json_schema_extra={"uniqueItems": True}),
                     AfterValidator(_distinct)]


MD5 = Text(r"[0-9a-f]{32}", "an md5 hex digest (32 characters 0-9a-f)")
NAME = r"[A-Za-z0-9_]+"  # names become stage names such as train_wordlm@<name>
Name = Text(NAME, "a name of letters, digits and _")
LM_NAME = Text(NAME, "a key of wordlm.models")
EPOCHS = Union[Literal["all"], Distinct(POSITIVE)]
# extra="forbid": an unknown key is an error, not silently ignored; python-re: wordlm.folder's lookahead
CONFIG = ConfigDict(extra="forbid", regex_engine="python-re")
section = dataclass(frozen=True, kw_only=True, config=CONFIG)


def check(ok: bool, message: str) -> None:
    """A check across a section's keys; ``{key}`` in ``message`` becomes the section's dotted key
    (a ValueError: pydantic reports it with the section's place in the file)."""
    if not ok:
        raise ValueError(message)


# --------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------
@section
class SampleImagesParams:
    seed: SEED
    train_per_class: POSITIVE
    val_per_class: POSITIVE
    test_images: Annotated[Int, Field(ge=0)]
    grayscale_fraction: PROBABILITY
    noise: PROBABILITY


@section
class TinyImageNetParams:
    source: Union[Literal["sample"], Text(r"(https?|file)://.+", "an http://, https:// or file:// URL")]
    md5: None | MD5
    sample: SampleImagesParams


@section
class LaunchParams:
    nnodes: POSITIVE
    rdzv_endpoint: None | Text(r"[^\s:]+:\d+", "host:port")
    backend: Literal["auto", "nccl", "gloo"]


@section
class ResnetParams:
    """params.yaml `resnet`: the training recipe of every train_resnet variant, and how they launch."""
    epochs: POSITIVE
    batch_size: POSITIVE
    lr: Number(gt=0)
    momentum: PROBABILITY
    weight_decay: Number(ge=0)
    input_size: Annotated[Int, Field(ge=32)]
    stem: Literal["torchvision", "cifar"]
    schedule: Literal["constant", "step", "cosine", "onecycle"]
    warmup_epochs: Number(ge=0)
    step_size: POSITIVE
    gamma: Number(gt=0, le=1)
    label_smoothing: Number(ge=0, le=0.99)
    seed: SEED
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    sync_bn: Bool
    deterministic: Bool  # deterministic cuDNN/cuBLAS kernels (devices.configure_kernels)
    eval_batch_size: POSITIVE
    print_freq: POSITIVE
    keep_epochs: Union[Literal["all"], Distinct(POSITIVE, min_length=0)]  # the last: always
    compile: Annotated[Literal[False, "default", "reduce-overhead", "max-autotune"], WrapValidator(_exactly)]
    launch: LaunchParams

    @model_validator(mode="after")
    def _warmup_within_training(self):
        check(self.warmup_epochs <= self.epochs,
              f"{{key}}.warmup_epochs = {self.warmup_epochs} is longer than {{key}}.epochs = {self.epochs}; "
              f"allowed: 0..{self.epochs}")
        return self

    def recipe(self) -> dict:
        """The recipe as a checkpoint records it: every key but the launch settings."""
        return {k: v for k, v in asdict(self).items() if k != "launch"}


@section
class ResnetRunParams:
    """One train_resnet variant (resnet_runs.<name>): gpus 0 trains on the CPU with ``procs`` processes."""
    gpus: Annotated[Int, Field(ge=0)]
    procs: POSITIVE = 1
    needs: Text(r"[A-Za-z0-9_.]+", "the params key the variant depends on (devices, or resnet_runs.<name>)")


@section
class EvalParams:
    run: Text(NAME, "auto or a key of resnet_runs")
    epochs: EPOCHS
    batch_size: POSITIVE


@section
class DiffParams:
    a: None | POSITIVE  # None: the first evaluated epoch
    b: None | POSITIVE  # None: the last
    grid_images: Annotated[Int, Field(ge=0)]


@section
class SampleCorpusParams:
    seed: SEED
    train_words: Annotated[Int, Field(ge=100)]
    valid_words: Annotated[Int, Field(ge=100)]
    test_words: Annotated[Int, Field(ge=100)]
    topics: POSITIVE
    topic_words: POSITIVE
    long_range: Bool
    unk_min_count: POSITIVE


@section
class LMTrainParams:
    """params.yaml `wordlm.train`: the settings every language model shares unless its entry sets its own."""
    epochs: POSITIVE
    batch_size: POSITIVE
    bptt: Annotated[Int, Field(ge=2)]
    clip: Number(gt=0)
    seed: SEED
    log_interval: POSITIVE
    eval_batch_size: POSITIVE
    eval_context: Annotated[Int, Field(ge=2)]
    eval_stride: POSITIVE
    threads: THREADS
    # the decoder's matrix products (most of a step's FLOPs): auto = bf16 on CPUs with native bf16
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _stride_within_context(self):
        check(self.eval_stride < self.eval_context, f"{{key}}.eval_stride = {self.eval_stride} must be smaller "
                                                    f"than {{key}}.eval_context = {self.eval_context}")
        return self


# Settings of wordlm.train that one model entry may set for itself (None: wordlm.train's).
MODEL_OVERRIDES = ("epochs", "batch_size", "bptt", "eval_context", "eval_stride")


@section
class LMModelParams:
    """What every wordlm.models entry has (fields in the order params.yaml's entries list them)."""
    type: str
    emsize: POSITIVE
    nhid: POSITIVE
    dropout: Number(ge=0, le=0.99)
    tied: Bool = False
    lr: Number(gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: Number(ge=0) = 0.01  # AdamW's; SGD (the example's) uses none
    epochs: None | POSITIVE = None
    batch_size: None | POSITIVE = None
    bptt: None | Annotated[Int, Field(ge=2)] = None
    eval_context: None | Annotated[Int, Field(ge=2)] = None
    eval_stride: None | POSITIVE = None

    def training(self, shared: LMTrainParams) -> LMTrainParams:
        """wordlm.train with this entry's own values of MODEL_OVERRIDES."""
        return replace(shared, **{k: getattr(self, k) for k in MODEL_OVERRIDES if getattr(self, k) is not None})


@section
class RNNParams(LMModelParams):
    type: Literal["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]
    nlayers: POSITIVE

    @model_validator(mode="after")
    def _tied_needs_equal_sizes(self):
        check(not self.tied or self.nhid == self.emsize,
              f"{{key}}.tied = true needs nhid == emsize (nhid {self.nhid}, emsize {self.emsize})")
        return self


@section
class TransformerParams(LMModelParams):
    type: Literal["Transformer"]
    nlayers: POSITIVE
    nhead: POSITIVE

    @model_validator(mode="after")
    def _heads_divide_emsize(self):
        check(self.emsize % self.nhead == 0,
              f"{{key}}.nhead = {self.nhead} does not divide emsize {self.emsize}; allowed: a divisor of it")
        return self


@section
class GCNNParams(LMModelParams):
    type: Literal["GCNN"]
    kernel_size: Annotated[Int, Field(ge=2)]
    dilations: None | Annotated[list[POSITIVE], Field(min_length=1)] = None  # None: nlayers layers of dilation 1
    nlayers: POSITIVE = 4

    def layer_dilations(self) -> list[int]:
        return list(self.dilations) if self.dilations else [1] * self.nlayers


LMModel = Annotated[Union[RNNParams, TransformerParams, GCNNParams], Field(discriminator="type")]


@section
class WordLMParams:
    corpus: Literal["sample", "data", "folder"]
    # corpus=folder: the folder of train.txt, valid.txt and test.txt (a dep of prepare_corpus in dvc.yaml)
    folder: Text(r"(?![A-Za-z][A-Za-z0-9+.-]+://)\S(.*\S)?", "a local folder path, relative to the project root or absolute")
    data_md5: MD5
    sample: SampleCorpusParams
    train: LMTrainParams
    models: Annotated[dict[Name, LMModel], Field(min_length=1)]


@section
class GenerateParams:
    model: LM_NAME
    words: POSITIVE
    temperature: Number(ge=1e-3)
    seed: SEED
    prompt: None | Text()


@section
class ContextProbeParams:
    split: Literal["train", "valid", "test"]
    targets: Annotated[Int, Field(ge=10)]
    max_context: Annotated[Int, Field(ge=2)]
    reference_context: Annotated[Int, Field(ge=2)]
    distances: Distinct(POSITIVE)
    tolerance: Number(gt=0, le=1)
    bootstrap: Annotated[Int, Field(ge=10)]
    seed: SEED
    batch: POSITIVE
    threads: THREADS
    models: None | Distinct(LM_NAME) = None  # None: every model of wordlm.models


@section
class LMCostParams:
    models: Distinct(LM_NAME, min_length=2)
    lengths: Distinct(Annotated[Int, Field(ge=2)], min_length=3)  # an exponent needs 3 lengths to fit
    repeats: POSITIVE
    seed: SEED
    ntoken: Annotated[Int, Field(ge=2)]
    threads: THREADS


@section
class ClaimsParams:
    bootstrap: Annotated[Int, Field(ge=100)]
    seed: SEED


@section
class ParamsFile:
    """params.yaml: the settings of every stage of the pipeline (dvc.yaml)."""
    devices: Annotated[Int, Field(ge=0)]
    tinyimagenet: TinyImageNetParams
    resnet: ResnetParams
    resnet_runs: Annotated[dict[Name, ResnetRunParams], Field(min_length=1)]
    eval: EvalParams
    diff: DiffParams
    wordlm: WordLMParams
    generate: GenerateParams
    context_probe: ContextProbeParams
    lm_cost: LMCostParams
    claims: ClaimsParams


SCHEMA: dict[str, Any] = typing.get_type_hints(ParamsFile, include_extras=True)  # section -> its type


# --------------------------------------------------------------------------------------
# Checks across sections: (the keys they read, the check: its error, or None). A check judges the
# raw values once the keys it reads are valid; it runs in the stages that validate one of its keys -
# except where ``STAGE_OF`` names the one key whose stage needs it: eval.epochs beyond resnet.epochs
# stops eval_epochs (the cheap stage to re-run), not the training of a shorter run.
# --------------------------------------------------------------------------------------
def _get(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def _evaluated_epochs_keep_weights(p):
    epochs, r = p["eval"]["epochs"], p["resnet"]
    dropped = [] if "all" in (epochs, r["keep_epochs"]) else [
        e for e in epochs if e not in r["keep_epochs"] and e != r["epochs"]]
    if dropped:
        return (f"resnet.keep_epochs = {_show(r['keep_epochs'])} drops the weights of epoch(s) {', '.join(map(str, dropped))}"
                f", which eval.epochs = {_show(epochs)} evaluates; allowed: all, or a list that includes every epoch of "
                f"eval.epochs")


def _lm_cost_models(p):
    chosen, models = p["lm_cost"]["models"], p["wordlm"]["models"]
    for name in chosen:
        if name not in models:
            return f"lm_cost.models lists {name}; allowed: keys of wordlm.models ({', '.join(models)})"
    if not any(models[name].get("type") == "Transformer" for name in chosen):
        return (f"lm_cost.models = {_show(chosen)} names no Transformer; allowed: keys of wordlm.models including one "
                f"of type Transformer (its attention is what is fitted)")


def _eval_epochs_within_training(p):
    epochs, trained = p["eval"]["epochs"], p["resnet"]["epochs"]
    if epochs != "all" and max(epochs) > trained:
        return (f"eval.epochs = {_show(epochs)} asks for epoch {max(epochs)}, but resnet.epochs = {trained}; "
                f"allowed: epochs 1..{trained}, or all")


def _probe_distances_within_context(p):
    c = p["context_probe"]
    if min(c["distances"]) >= c["reference_context"]:
        return (f"context_probe.distances = {_show(c['distances'])} has no distance below reference_context = "
                f"{c['reference_context']}")


def _lm_eval_windows(p):
    train = p["wordlm"]["train"]
    for name, m in p["wordlm"]["models"].items():
        context, stride = m.get("eval_context", train["eval_context"]), m.get("eval_stride", train["eval_stride"])
        if stride >= context:
            return (f"wordlm.models.{name}: eval_stride {stride} must be smaller than eval_context {context} (its own, "
                    f"or wordlm.train's)")


CHECKS: list[tuple[tuple[str, ...], Callable[[dict], str | None]]] = [
    (("eval.run", "resnet_runs"), lambda p: None if p["eval"]["run"] in ("auto", *p["resnet_runs"]) else (
        f"eval.run = {p['eval']['run']}; allowed: auto or a key of resnet_runs ({', '.join(p['resnet_runs'])})")),
    (("diff", "eval.epochs"), lambda p: next((
        f"diff.{n} = {p['diff'][n]} is not among eval.epochs {_show(p['eval']['epochs'])}; allowed: null "
        f"(first/last evaluated epoch) or one of eval.epochs" for n in "ab"
        if p["diff"][n] is not None and p["eval"]["epochs"] != "all" and p["diff"][n] not in p["eval"]["epochs"]), None)),
    (("eval.epochs", "resnet.epochs"), _eval_epochs_within_training),
    (("resnet.keep_epochs", "eval.epochs", "resnet.epochs"), _evaluated_epochs_keep_weights),
    (("generate.model", "wordlm.models"), lambda p: None if p["generate"]["model"] in p["wordlm"]["models"] else (
        f"generate.model = {p['generate']['model']}; allowed: a key of wordlm.models ({', '.join(p['wordlm']['models'])})")),
    (("context_probe.models", "wordlm.models"), lambda p: next((
        f"context_probe.models lists {name}; allowed: keys of wordlm.models ({', '.join(p['wordlm']['models'])})"
        for name in p["context_probe"].get("models") or [] if name not in p["wordlm"]["models"]), None)),
    (("context_probe.distances", "context_probe.reference_context"), _probe_distances_within_context),
    (("wordlm.models", "wordlm.train"), _lm_eval_windows),
    (("lm_cost", "wordlm.models"), _lm_cost_models),
]
STAGE_OF = {_eval_epochs_within_training: "eval.epochs"}


# --------------------------------------------------------------------------------------
# Validation, and pydantic's errors as one line worded from the JSON Schema
# --------------------------------------------------------------------------------------
@functools.cache
def _adapter(dotted: str) -> TypeAdapter:
    """The validator of a dotted key (``resnet``, ``resnet.lr``, ``wordlm.models.lstm``)."""
    first, *rest = dotted.split(".")
    kind = SCHEMA.get(first)
    for part in rest:
        while typing.get_origin(kind) is Annotated:
            kind = typing.get_args(kind)[0]
        if dataclasses.is_dataclass(kind) and part in {f.name for f in dataclasses.fields(kind)}:
            kind = typing.get_type_hints(kind, include_extras=True)[part]
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        else:
            kind = None
        if kind is None:
            break
    if kind is None:
        raise KeyError(f"{dotted} is not in the params schema (dlreport/params.py)")
    return TypeAdapter(kind, config=None if dataclasses.is_dataclass(kind) else CONFIG)


def _resolve(node: dict, defs: dict) -> dict:
    return _resolve(defs[node["$ref"].rsplit("/", 1)[-1]], defs) if "$ref" in node else node


def _did_you_mean(word: Any, choices) -> str:
    close = difflib.get_close_matches(word, [c for c in choices if isinstance(c, str)], n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]}?)" if close else ""


def _entry(node: dict) -> dict | None:
    """The schema of a mapping's entries (resnet_runs.<name>), if ``node`` is a mapping of names."""
    return next(iter(node.get("patternProperties", {}).values()), node.get("additionalProperties"))


def _tags(node: dict, defs: dict) -> list:
    """The values of a tagged union's tag (a model's ``type``), in the models' order."""
    name, tags = node["discriminator"]["propertyName"], []
    for ref in node["oneOf"]:
        tag = defs[ref["$ref"].rsplit("/", 1)[-1]]["properties"][name]
        tags += tag.get("enum", [tag.get("const")])
    return tags


def describe(node: dict, defs: dict) -> str:
    """What a JSON Schema node allows, in words: "an integer >= 1", "one of sgd, adamw", ..."""
    node = _resolve(node, defs)
    kind = node.get("type")
    if "anyOf" in node:
        return " or ".join(describe(n, defs) for n in sorted(node["anyOf"], key=lambda n: n.get("type") != "null"))
    if "const" in node:
        return _show(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(map(_show, node["enum"]))
    if "discriminator" in node:
        return f"a mapping whose {node['discriminator']['propertyName']} is one of {', '.join(_tags(node, defs))}"
    if kind in ("integer", "number"):
        bounds = [f"{op} {node[word]:g}" for word, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                          ("maximum", "<=")) if word in node]
        return " ".join([f"a{'n integer' if kind == 'integer' else ' number'}", " and ".join(bounds)]).strip()
    if kind == "array":
        at_least = node.get("minItems", 0)
        return (f"a list of {'distinct ' if node.get('uniqueItems') else ''}values, each {describe(node['items'], defs)}"
                + (f", at least {at_least}" if at_least > 1 else ""))
    if "properties" in node:
        return "a mapping with keys " + ", ".join(node["properties"])
    if kind == "object":
        return f"a mapping of names to entries ({describe(_entry(node), defs)})"
    return {"boolean": "true or false", "null": "null"}.get(kind) or node.get("description", "a non-empty string")


def _explain(key: str, value: Any, error: ValidationError) -> str:
    """The one line of a pydantic error: the first problem, named by its dotted key."""
    schema = _adapter(key).json_schema()
    defs = schema.get("$defs", {})
    errors = error.errors()
    first = next((e for e in errors if e["type"] in ("extra_forbidden", "unexpected_keyword_argument")), errors[0])
    node, rest = schema, list(first["loc"])
    while rest:  # walk down to the mapping or value the problem is in
        part, node = rest[0], _resolve(node, defs)
        tag = node.get("discriminator", {})
        if tag and isinstance(value, dict) and value.get(tag["propertyName"]) == part:
            node = {"$ref": tag["mapping"][part]}  # the model a `type` picks (pydantic puts the tag in the path)
        elif (isinstance(value, dict) and part in value and rest[1:] != ["[key]"]
              and isinstance(sub := node.get("properties", {}).get(part, _entry(node)), dict)):
            key, value, node = f"{key}.{part}", value[part], sub
        else:
            break
        rest.pop(0)
    node = _resolve(node, defs)
    kind = first["type"]
    if kind == "missing":
        return f"{key}.{rest[0]} is missing; set it in params.yaml to {describe(node['properties'][rest[0]], defs)}"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return (f"{key}.{rest[0]} is not a known key of {key}{_did_you_mean(str(rest[0]), node['properties'])}; "
                f"known keys: {', '.join(node['properties'])}")
    if rest[1:] == ["[key]"]:
        return f"{key}: the name {_show(rest[0])} is not allowed; use letters, digits and _"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        name, tags = node["discriminator"]["propertyName"], _tags(node, defs)
        found = value.get(name) if isinstance(value, dict) else None
        return f"{key}.{name} = {_show(found)}; allowed: one of {', '.join(tags)}{_did_you_mean(found, tags)}"
    if kind == "value_error":  # our own checks: ``{key}`` and ``{allowed}`` stand for the key and its rule
        return str(first["ctx"]["error"]).replace("{key}", key).replace("{allowed}", describe(node, defs))
    items = next((n["items"] for n in [node, *node.get("anyOf", [])] if "items" in n), None)
    if rest and isinstance(rest[0], int) and items:
        return f"{key} = {_show(value)}: item {_show(value[rest[0]])} is not allowed; each must be {describe(items, defs)}"
    return f"{key} = {_show(value)}; allowed: {describe(node, defs)}{_did_you_mean(value, node.get('enum', []))}"


def _typed(key: str, value: Any) -> Any:
    try:
        return _adapter(key).validate_python(value)
    except ValidationError as error:
        raise ParamsError(_explain(key, value, error)) from None


def _covers(validated: list[str], key: str) -> bool:
    """Whether one of the validated keys is ``key`` or contains it (or lies inside it)."""
    return any(key == v or key.startswith(v + ".") or v.startswith(key + ".") for v in validated)


def validate(params: Any, keys: list[str], source: str = "params.yaml") -> dict[str, Any]:
    """Check ``keys`` (dotted; ``[]`` = every section) of ``params``; their typed values by key."""
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, found {_show(params)}. "
                          f"Restore it with: git checkout {source}")
    keys, typed = list(keys) or list(SCHEMA), {}
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
            schema = _adapter(key).json_schema()
            raise ParamsError(f"{source}: {key} is missing{known}; set it to {describe(schema, schema.get('$defs', {}))}") from None
        try:
            typed[key] = _typed(key, value)
        except ParamsError as error:
            raise ParamsError(f"{source}: {error}") from None
    for reads, cross in CHECKS:
        if not any(_covers(keys, k) for k in ((STAGE_OF[cross],) if cross in STAGE_OF else reads)):
            continue
        try:  # a check judges only valid keys; the stages that read the others report them
            for k in reads:
                _typed(k, _get(params, k))
        except (KeyError, TypeError, ParamsError):
            continue
        found = cross(params)
        if found:
            raise ParamsError(f"{source}: {found}")
    return typed


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
    kind = {"Transformer": TransformerParams, "GCNN": GCNNParams}.get(record["type"], RNNParams)
    return kind(**{f.name: record[f.name] for f in dataclasses.fields(kind) if f.name in record})


class Params:
    """The params a stage validated, typed: ``params[key]`` for each dotted key it asked for
    (``params["resnet"]`` a ResnetParams, ``params["wordlm.models.lstm"]`` an RNNParams, ``params["devices"]``
    an int); ``raw`` is the whole file as DVC reads it."""

    def __init__(self, raw: dict, typed: dict[str, Any]):
        self.raw = raw
        self._typed = typed

    def __getitem__(self, key: str) -> Any:
        return self._typed[key]

    def __contains__(self, key: str) -> bool:
        return key in self._typed


def load_params(path: str | Path = "params.yaml", *keys: str) -> Params:
    """Read params.yaml, validate ``keys`` (every section when none are given) and type them: once per
    stage, before it does any work."""
    raw = read_params(path)
    return Params(raw, validate(raw, list(keys), str(path)))


def parse(key: str, value: Any) -> Any:
    """One validated, typed value of a params key (``parse("resnet", {...})``): what a stage gets for
    ``key``, for code that makes its params itself (tests, benchmarks)."""
    return _typed(key, value)


def json_schema() -> dict:
    """params.schema.json: the sections' JSON Schema, for editors (see docs/development.md)."""
    return TypeAdapter(ParamsFile).json_schema()


if __name__ == "__main__":  # python -m dlreport.params: write params.schema.json
    SCHEMA_FILE.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {SCHEMA_FILE}")
