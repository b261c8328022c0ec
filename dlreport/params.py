"""params.yaml, read as DVC reads it and checked by every stage before any work: one frozen dataclass per
section that pydantic validates (types and defaults say what may be written, unknown keys are refused,
``check()`` judges across a section's keys, ``CHECKS`` across sections). ``load_params(path, *keys)``
takes the keys a stage's dvc.yaml entry depends on; a bad value is a ``ParamsError`` of one line worded
from the JSON Schema, which ``python -m dlreport.params`` writes to params.schema.json for editors.
Without pydantic (the lent GPU machine's image) the objects are built from the values unchecked."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from dlreport.errors import PipelineError
from dlreport.fileio import read_yaml

try:
    from pydantic import (AfterValidator, ConfigDict, Field, Strict, StringConstraints, TypeAdapter,
                          ValidationError, WrapValidator, model_validator)
except ImportError:  # the annotations below still evaluate (to no constraints): see _unchecked
    AfterValidator = ConfigDict = Field = Strict = StringConstraints = WrapValidator = lambda *a, **k: None
    model_validator = lambda **k: lambda method: method  # noqa: E731
    TypeAdapter = ValidationError = None


class ParamsError(PipelineError):
    """A params.yaml value the pipeline cannot use."""


def _show(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 80 else text[:77] + "..."


# Value types, strict: `yes`, 1, 2.0 or "3" are not true, true, 2 or 3 (YAML 1.2 reads yes as a
# string). {key}, {value} and {allowed} in a ValueError become the key, its value and its rule.
def _as_written(value, handler):  # lr: 20 stays the int 20 (as in dvc.lock and the report), not 20.0
    checked = handler(value)
    return value if type(value) is int else checked


def _exactly(value, handler):  # a Literal takes 0 for false: `compile: 0` is not one of the choices
    if type(checked := handler(value)) is not type(value):
        raise ValueError("{key} = {value}; allowed: {allowed}")
    return checked


def _distinct(items: list) -> list:
    if len({_show(i) for i in items}) != len(items):
        raise ValueError("{key} = {value} repeats a value; allowed: {allowed}")
    return items


def Int(**bounds):  # noqa: N802 - types; bounds as pydantic's Field takes them (ge=1)
    return Annotated[int, Strict(), Field(**bounds)]


def Number(**bounds):  # noqa: N802 - the bounds inside the validator that keeps ints, so the schema has them
    return Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds), WrapValidator(_as_written)]


def Text(pattern: str | None = None, what: str = "a non-empty string"):  # noqa: N802 - described as `what`
    return Annotated[str, Strict(), StringConstraints(min_length=1, pattern=pattern and f"^(?:{pattern})$"),
                     Field(description=what)]


def Distinct(item, min_length: int = 1):  # noqa: N802 - a list of distinct values (epochs, model names)
    return Annotated[list[item], Field(min_length=min_length, json_schema_extra={"uniqueItems": True}),
                     AfterValidator(_distinct)]


Bool, POSITIVE, SEED, PROBABILITY = Annotated[bool, Strict()], Int(ge=1), Int(ge=0), Number(ge=0, le=1)
MD5 = Text(r"[0-9a-f]{32}", "an md5 hex digest (32 characters 0-9a-f)")
NAME = r"[A-Za-z0-9_]+"  # names become stage names such as train_wordlm@<name>
LM_NAME = Text(NAME, "a key of wordlm.models")
EPOCHS = Union[Literal["all"], Distinct(POSITIVE)]


class Section:
    """A section of params.yaml: each subclass becomes a frozen keyword-only dataclass that pydantic validates
    with CONFIG (an unknown key is an error; python-re for wordlm.folder's lookahead)."""
    __pydantic_config__ = CONFIG = ConfigDict(extra="forbid", regex_engine="python-re")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)

    @model_validator(mode="after")
    def _checked(self):
        self.check()
        return self

    def check(self) -> None:
        """Checks across the section's keys, on validated values; a ValueError's {key}: its dotted key."""


# The sections, their keys in params.yaml's order.
class SampleImagesParams(Section):
    seed: SEED
    train_per_class: POSITIVE
    val_per_class: POSITIVE
    test_images: Int(ge=0)
    grayscale_fraction: PROBABILITY
    noise: PROBABILITY


class TinyImageNetParams(Section):
    source: Union[Literal["sample"], Text(r"(https?|file)://.+", "an http://, https:// or file:// URL")]
    md5: None | MD5
    sample: SampleImagesParams


class LaunchParams(Section):
    nnodes: POSITIVE
    rdzv_endpoint: None | Text(r"[^\s:]+:\d+", "host:port")
    backend: Literal["auto", "nccl", "gloo"]


class ResnetParams(Section):
    """params.yaml `resnet`: the training recipe of every train_resnet variant, and how they launch."""
    epochs: POSITIVE
    batch_size: POSITIVE
    lr: Number(gt=0)
    momentum: PROBABILITY
    weight_decay: Number(ge=0)
    input_size: Int(ge=32)
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

    def check(self):
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"{{key}}.warmup_epochs = {self.warmup_epochs} is longer than {{key}}.epochs = "
                             f"{self.epochs}; allowed: 0..{self.epochs}")

    def recipe(self) -> dict:
        """The recipe as a checkpoint records it: every key but the launch settings."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "launch"}


class ResnetRunParams(Section):
    """One train_resnet variant (resnet_runs.<name>): gpus 0 trains on the CPU with ``procs`` processes."""
    gpus: Int(ge=0)
    procs: POSITIVE = 1
    needs: Text(r"[A-Za-z0-9_.]+", "the params key the variant depends on (devices, or resnet_runs.<name>)")


class EvalParams(Section):
    run: Text(NAME, "auto or a key of resnet_runs")
    epochs: EPOCHS
    batch_size: POSITIVE


class DiffParams(Section):
    a: None | POSITIVE  # None: the first evaluated epoch
    b: None | POSITIVE  # None: the last
    grid_images: Int(ge=0)


class SampleCorpusParams(Section):
    seed: SEED
    train_words: Int(ge=100)
    valid_words: Int(ge=100)
    test_words: Int(ge=100)
    topics: POSITIVE
    topic_words: POSITIVE
    long_range: Bool
    unk_min_count: POSITIVE


class LMTrainParams(Section):
    """params.yaml `wordlm.train`: the settings every language model shares unless its entry sets its own."""
    epochs: POSITIVE
    batch_size: POSITIVE
    bptt: Int(ge=2)
    clip: Number(gt=0)
    seed: SEED
    log_interval: POSITIVE
    eval_batch_size: POSITIVE
    eval_context: Int(ge=2)
    eval_stride: POSITIVE
    threads: SEED  # 0: torch's default (all cores)
    # the decoder's matrix products (most of a step's FLOPs): auto = bf16 on CPUs with native bf16
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def check(self):
        if self.eval_stride >= self.eval_context:
            raise ValueError(f"{{key}}.eval_stride = {self.eval_stride} must be smaller than {{key}}.eval_context = "
                             f"{self.eval_context}")


# Settings of wordlm.train that one model entry may set for itself (None: wordlm.train's).
MODEL_OVERRIDES = ("epochs", "batch_size", "bptt", "eval_context", "eval_stride")


class LMModelParams(Section):
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
    bptt: None | Int(ge=2) = None
    eval_context: None | Int(ge=2) = None
    eval_stride: None | POSITIVE = None

    def training(self, shared: LMTrainParams) -> LMTrainParams:
        """wordlm.train with this entry's own values of MODEL_OVERRIDES."""
        return dataclasses.replace(shared, **{k: getattr(self, k) for k in MODEL_OVERRIDES if getattr(self, k)})


class RNNParams(LMModelParams):
    type: Literal["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]
    nlayers: POSITIVE

    def check(self):
        if self.tied and self.nhid != self.emsize:
            raise ValueError(f"{{key}}.tied = true needs nhid == emsize (nhid {self.nhid}, emsize {self.emsize})")


class TransformerParams(LMModelParams):
    type: Literal["Transformer"]
    nlayers: POSITIVE
    nhead: POSITIVE

    def check(self):
        if self.emsize % self.nhead:
            raise ValueError(f"{{key}}.nhead = {self.nhead} does not divide emsize {self.emsize}; allowed: a "
                             f"divisor of it")


class GCNNParams(LMModelParams):
    type: Literal["GCNN"]
    kernel_size: Int(ge=2)
    dilations: None | Annotated[list[POSITIVE], Field(min_length=1)] = None  # None: nlayers layers of dilation 1
    nlayers: POSITIVE = 4

    def layer_dilations(self) -> list[int]:
        return list(self.dilations) if self.dilations else [1] * self.nlayers


class WordLMParams(Section):
    corpus: Literal["sample", "data", "folder"]
    # corpus=folder: the folder of train.txt, valid.txt and test.txt (a dep of prepare_corpus in dvc.yaml)
    folder: Text(r"(?![A-Za-z][A-Za-z0-9+.-]+://)\S(.*\S)?", "a local folder path, relative to the project root or absolute")
    data_md5: MD5
    sample: SampleCorpusParams
    train: LMTrainParams
    models: Annotated[dict[Text(NAME, "a name of letters, digits and _"), Annotated[  # the class its type names
        Union[RNNParams, TransformerParams, GCNNParams], Field(discriminator="type")]], Field(min_length=1)]


class GenerateParams(Section):
    model: LM_NAME
    words: POSITIVE
    temperature: Number(ge=1e-3)
    seed: SEED
    prompt: None | Text()


class ContextProbeParams(Section):
    split: Literal["train", "valid", "test"]
    targets: Int(ge=10)
    max_context: Int(ge=2)
    reference_context: Int(ge=2)
    distances: Distinct(POSITIVE)
    tolerance: Number(gt=0, le=1)
    bootstrap: Int(ge=10)
    seed: SEED
    batch: POSITIVE
    threads: SEED
    models: None | Distinct(LM_NAME) = None  # None: every model of wordlm.models


class LMCostParams(Section):
    models: Distinct(LM_NAME, min_length=2)
    lengths: Distinct(Int(ge=2), min_length=3)  # an exponent needs 3 lengths to fit
    repeats: POSITIVE
    seed: SEED
    ntoken: Int(ge=2)
    threads: SEED


class ClaimsParams(Section):
    bootstrap: Int(ge=100)
    seed: SEED


class ParamsFile(Section):
    """params.yaml: the settings of every stage of the pipeline (dvc.yaml)."""
    devices: Int(ge=0)
    tinyimagenet: TinyImageNetParams
    resnet: ResnetParams
    resnet_runs: Annotated[dict[Text(NAME, "a name of letters, digits and _"), ResnetRunParams], Field(min_length=1)]
    eval: EvalParams
    diff: DiffParams
    wordlm: WordLMParams
    generate: GenerateParams
    context_probe: ContextProbeParams
    lm_cost: LMCostParams
    claims: ClaimsParams


SCHEMA: dict[str, Any] = typing.get_type_hints(ParamsFile, include_extras=True)  # section -> its type


def _names(key: str, value, known: dict, allowed: str) -> str | None:
    """The error of ``value`` (a name, or a list of them) naming what is not a key of ``known``."""
    for name in value if isinstance(value, list) else [value]:
        if name not in known:
            said = f"lists {name}" if isinstance(value, list) else f"= {name}"
            return f"{key} {said}; allowed: {allowed} ({', '.join(known)})"


# Checks across sections: (the keys a check reads, the keys whose stages run it if not those, the check
# of their typed values: its error or a false value). A check runs once the keys it reads are valid, in
# the stages that validate one of them: eval.epochs beyond resnet.epochs stops eval_epochs (the cheap
# stage to re-run), not the training of a shorter run.
CHECKS = [
    (("eval.run", "resnet_runs"), (), lambda run, runs: run != "auto" and _names(
        "eval.run", run, runs, "auto or a key of resnet_runs")),
    (("diff", "eval.epochs"), (), lambda diff, epochs: epochs != "all" and next((
        f"diff.{n} = {e} is not among eval.epochs {_show(epochs)}; allowed: null (first/last evaluated epoch) or one "
        f"of eval.epochs" for n, e in (("a", diff.a), ("b", diff.b)) if e is not None and e not in epochs), None)),
    (("eval.epochs", "resnet.epochs"), ("eval.epochs",), lambda epochs, trained: epochs != "all" and max(
        epochs) > trained and (f"eval.epochs = {_show(epochs)} asks for epoch {max(epochs)}, but resnet.epochs = "
                               f"{trained}; allowed: epochs 1..{trained}, or all")),
    (("resnet.keep_epochs", "eval.epochs", "resnet.epochs"), (), lambda kept, epochs, last: "all" not in (
        kept, epochs) and (dropped := [e for e in epochs if e not in kept and e != last]) and (
        f"resnet.keep_epochs = {_show(kept)} drops the weights of epoch(s) {', '.join(map(str, dropped))}, which "
        f"eval.epochs = {_show(epochs)} evaluates; allowed: all, or a list that includes every epoch of eval.epochs")),
    (("generate.model", "wordlm.models"), (), lambda model, models: _names(
        "generate.model", model, models, "a key of wordlm.models")),
    (("context_probe.models", "wordlm.models"), (), lambda chosen, models: _names(
        "context_probe.models", chosen or [], models, "keys of wordlm.models")),
    (("context_probe.distances", "context_probe.reference_context"), (), lambda distances, context: min(
        distances) >= context and (f"context_probe.distances = {_show(distances)} has no distance below "
                                   f"reference_context = {context}")),
    (("wordlm.models", "wordlm.train"), (), lambda models, train: next((
        f"wordlm.models.{name}: eval_stride {s} must be smaller than eval_context {c} (its own, or wordlm.train's)"
        for name, m in models.items() if (s := m.eval_stride or train.eval_stride) >= (
            c := m.eval_context or train.eval_context)), None)),
    (("lm_cost.models", "wordlm.models"), ("lm_cost",), lambda chosen, models: _names(
        "lm_cost.models", chosen, models, "keys of wordlm.models") or all(models[n].type != "Transformer" for n in chosen)
        and (f"lm_cost.models = {_show(chosen)} names no Transformer; allowed: keys of wordlm.models including one of "
             f"type Transformer (its attention is what is fitted)")),
]


# Validation, and pydantic's errors as one line worded from the JSON Schema.
_ABSENT = object()


def _get(params: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        params = params.get(part, _ABSENT) if isinstance(params, dict) else _ABSENT
    return params


def _bare(kind):
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    return kind


def _tags(kind) -> list:
    """The types a wordlm.models entry (a tagged union, or one of its classes) may name, in their order."""
    kind = _bare(kind)
    if typing.get_origin(kind) is Union:
        return [tag for member in typing.get_args(kind) for tag in _tags(member)]
    return list(typing.get_args(_field(kind, "type"))) if dataclasses.is_dataclass(kind) else []


def _field(kind, part):
    """The type of ``part`` in ``kind``: a section's field, a mapping's entry, the class a type names; or None."""
    kind = _bare(kind)
    if typing.get_origin(kind) is Union:
        return next((member for member in typing.get_args(kind) if part in _tags(member)), None)
    if dataclasses.is_dataclass(kind):
        return typing.get_type_hints(kind, include_extras=True).get(part)
    return typing.get_args(kind)[1] if typing.get_origin(kind) is dict else None


@functools.cache
def _kind(dotted: str):
    """The type of a dotted key (``resnet``, ``resnet.lr``, ``wordlm.models.lstm``)."""
    kind = ParamsFile
    for part in dotted.split("."):
        if (kind := _field(kind, part)) is None:
            raise KeyError(f"{dotted} is not in the params schema (dlreport/params.py)")
    return kind


@functools.cache  # the types are hashable; building an adapter takes milliseconds
def _adapt(kind) -> TypeAdapter:
    return TypeAdapter(kind, config=None if dataclasses.is_dataclass(kind) else Section.CONFIG)


def _schema(kind) -> dict:
    """The JSON Schema of a type, each $ref replaced by what it refers to."""
    schema = _adapt(kind).json_schema()
    defs, text = schema.pop("$defs", {}), json.dumps(schema)
    while '"$ref"' in text:
        text = json.dumps(json.loads(text, object_hook=lambda n: defs[n["$ref"].split("/")[-1]] if "$ref" in n else n))
    return json.loads(text)


def _did_you_mean(word: Any, choices) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]}?)" if close else ""


def describe(node: dict) -> str:
    """What a JSON Schema node allows, in words: "an integer >= 1", "one of sgd, adamw", ..."""
    kind, least, choices = node.get("type"), node.get("minItems", 0), node.get("enum", [node.get("const")])
    if "anyOf" in node:  # null first: "null or a non-empty string"
        return " or ".join(describe(n) for n in sorted(node["anyOf"], key=lambda n: n.get("type") != "null"))
    if "const" in node or "enum" in node:
        return ("one of " if "enum" in node else "") + ", ".join(map(_show, choices))
    if "discriminator" in node:  # the wordlm.models entries: their types in the models' order
        name = node["discriminator"]["propertyName"]
        tags = [describe(member["properties"][name]).removeprefix("one of ") for member in node["oneOf"]]
        return f"a mapping whose {name} is one of {', '.join(tags)}"
    if kind in ("integer", "number"):
        bounds = " and ".join(f"{op} {node[word]:g}" for word, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                                     ("maximum", "<=")) if word in node)
        return f"a{'n integer' if kind == 'integer' else ' number'} {bounds}".strip()
    if kind == "array":
        return (f"a list of {'distinct ' if node.get('uniqueItems') else ''}values, each {describe(node['items'])}"
                + (f", at least {least}" if least > 1 else ""))
    if "properties" in node:
        return "a mapping with keys " + ", ".join(node["properties"])
    if kind == "object":  # a mapping of names (resnet_runs)
        entry = next(iter(node.get("patternProperties", {}).values()), node.get("additionalProperties"))
        return f"a mapping of names to entries ({describe(entry)})"
    return {"boolean": "true or false", "null": "null"}.get(kind) or node.get("description", "a non-empty string")


def _explain(key: str, value: Any, error: ValidationError) -> str:
    """A pydantic error as one line: its first problem (an unknown key first), named by its dotted key."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "unexpected_keyword_argument"), errors[0])
    kind, rest, problem = _kind(key), list(first["loc"]), first["type"]
    while rest and isinstance(value, dict) and rest[1:] != ["[key]"] and (inner := _field(kind, rest[0])):
        if typing.get_origin(_bare(kind)) is not Union:  # (pydantic puts a wordlm.models entry's type in the path)
            key, value = f"{key}.{rest[0]}", value.get(rest[0])
        kind = inner
        rest.pop(0)
    node = _schema(kind)
    if problem == "missing":
        return f"{key} is missing; set it in params.yaml to {describe(node)}"
    if problem == "unexpected_keyword_argument":
        return (f"{key}.{rest[0]} is not a known key of {key}{_did_you_mean(rest[0], node['properties'])}; "
                f"known keys: {', '.join(node['properties'])}")
    if rest[1:] == ["[key]"]:
        return f"{key}: the name {_show(rest[0])} is not allowed; use letters, digits and _"
    if problem in ("union_tag_invalid", "union_tag_not_found"):
        found = value.get("type") if isinstance(value, dict) else None
        return f"{key}.type = {_show(found)}; allowed: one of {', '.join(_tags(kind))}{_did_you_mean(found, _tags(kind))}"
    if problem == "value_error":  # our own checks: {key}, {value} and {allowed} stand for the key, its value and rule
        return (str(first["ctx"]["error"]).replace("{key}", key).replace("{value}", _show(value))
                .replace("{allowed}", describe(node)))
    items = next((n["items"] for n in [node, *node.get("anyOf", [])] if "items" in n), None)
    if rest and isinstance(rest[0], int) and items:
        return f"{key} = {_show(value)}: item {_show(value[rest[0]])} is not allowed; each must be {describe(items)}"
    return f"{key} = {_show(value)}; allowed: {describe(node)}{_did_you_mean(value, node.get('enum', []))}"


def _unchecked(kind, value):
    """``value`` as ``kind`` without pydantic: the sections' dataclasses built from the values as written."""
    if typing.get_origin(kind := _bare(kind)) is Union and isinstance(value, dict):  # a wordlm.models entry: by its type
        kind = _field(kind, value["type"])
    if not (dataclasses.is_dataclass(kind) or typing.get_origin(kind) is dict):
        return value
    built = {name: _unchecked(_field(kind, name), v) for name, v in value.items()}
    if not dataclasses.is_dataclass(kind):
        return built
    (section := kind(**built)).check()
    return section


def parse(key: str, value: Any) -> Any:
    """One validated, typed value of a params key (``parse("resnet", {...})``): what a stage gets for
    ``key``, for code that makes its params itself (tests, benchmarks)."""
    try:
        return _adapt(_kind(key)).validate_python(value) if TypeAdapter else _unchecked(_kind(key), value)
    except ValueError as error:  # pydantic's ValidationError, or a section's check() without pydantic
        raise ParamsError(_explain(key, value, error) if TypeAdapter else str(error).replace("{key}", key)) from None


def validate(params: Any, keys: list[str], source: str = "params.yaml") -> dict[str, Any]:
    """Check ``keys`` (dotted; ``[]`` = every section) of ``params``; their typed values by key."""
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, found {_show(params)}. "
                          f"Restore it with: git checkout {source}")
    keys, typed = list(keys) or list(SCHEMA), {}
    for key in keys:
        if (value := _get(params, key)) is _ABSENT:
            parent, _, name = key.rpartition(".")
            has = list(map(str, up)) if parent and isinstance(up := _get(params, parent), dict) else []
            close = difflib.get_close_matches(name, has, n=1)
            known = f" (it has: {', '.join(has)}" + (f"; did you mean {parent}.{close[0]}?)" if close else ")") if has else ""
            allowed = f"; set it to {describe(_schema(_kind(key)))}" if TypeAdapter else ""
            raise ParamsError(f"{source}: {key} is missing{known}{allowed}")
        try:
            typed[key] = parse(key, value)
        except ParamsError as error:
            raise ParamsError(f"{source}: {error}") from None
    for reads, stage, cross in CHECKS:
        if not any(k == v or k.startswith(v + ".") or v.startswith(k + ".") for k in stage or reads for v in keys):
            continue  # the check reads no key this stage validated (nor one inside one, or around one)
        try:  # a check judges only valid keys; the stages that read the others report them
            values = [parse(k, _get(params, k)) for k in reads if _get(params, k) is not _ABSENT]
        except ParamsError:
            continue
        if len(values) == len(reads) and (found := cross(*values)):
            raise ParamsError(f"{source}: {found}")
    return typed


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml as DVC reads it (``read_yaml``), not yet validated; every read of params goes through here."""
    from ruamel.yaml import YAMLError

    path = Path(path)
    try:
        return read_yaml(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file. Run the stage from the project folder (or pass --params).") from None
    except YAMLError as error:
        line = f" at line {error.problem_mark.line + 1}" if getattr(error, "problem_mark", None) else ""
        raise ParamsError(f"{path}: not valid YAML{line}. Fix it, or restore it with: git checkout {path}") from None


def lm_model(record: dict) -> LMModelParams:
    """A wordlm.models entry from a record of one (a train_wordlm checkpoint's config; its other keys ignored)."""
    kind = _field(_kind("wordlm.models.x"), record["type"]) or RNNParams
    return kind(**{f.name: record[f.name] for f in dataclasses.fields(kind) if f.name in record})


class Params(dict):
    """The params a stage validated, typed, by the dotted keys it asked for (``params["resnet"]`` a
    ResnetParams, ``params["wordlm.models.lstm"]`` an RNNParams); ``raw``: the whole file as DVC reads it."""

    def __init__(self, raw: dict, typed: dict[str, Any]):
        super().__init__(typed)
        self.raw = raw


def load_params(path: str | Path = "params.yaml", *keys: str) -> Params:
    """Read params.yaml, validate ``keys`` (every section when none are given) and type them: once per
    stage, before it does any work."""
    raw = read_params(path)
    return Params(raw, validate(raw, list(keys), str(path)))


def json_schema() -> dict:
    """params.schema.json: the sections' JSON Schema, for editors (see docs/development.md)."""
    return TypeAdapter(ParamsFile).json_schema()


if __name__ == "__main__":  # python -m dlreport.params: write params.schema.json
    (written := Path(__file__).resolve().parent.parent / "params.schema.json").write_text(
        json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {written}")
