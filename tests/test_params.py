"""params.yaml is checked before any work: every stage validates the sections it reads against
dlreport/params.py and fails with one `error:` line naming the key, the value and what is
allowed - no traceback, no output touched, no checkpoint moved."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO, STAGES, make_project, ran, restore_committed, run, run_stage_in_process
from dlreport import params as schema

BASE = schema.read_params(REPO / "params.yaml")

# (stage script and its arguments, dotted key, bad value, text the error must contain).
# DELETE removes the key. Every section of params.yaml has rows here.
DELETE = object()
TRAIN = ["train_resnet.py", "--variant", "cpu"]
EVAL = ["eval_epochs.py", "--summaries", "metrics/train_resnet_cpu.json"]
LM = ["train_wordlm.py", "--model", "lstm"]
BAD = [
    (["download_tinyimagenet.py"], "tinyimagenet.source", "ftp://example.com/x.zip", "http://, https:// or file:// URL"),
    (["download_tinyimagenet.py"], "tinyimagenet.source", 42, "tinyimagenet.source = 42"),
    (["download_tinyimagenet.py"], "tinyimagenet.md5", "abc", "md5 hex digest"),
    (["download_tinyimagenet.py"], "tinyimagenet.sample.train_per_class", 0, "an integer >= 1"),
    (["download_tinyimagenet.py"], "tinyimagenet.sample.noise", 2, "a number >= 0 and <= 1"),
    (["download_tinyimagenet.py"], "tinyimagenet.sample.sed", 1, "did you mean seed?"),
    (["download_tinyimagenet.py"], "tinyimagenet.sample", DELETE, "tinyimagenet.sample is missing"),
    (TRAIN, "resnet.batch_size", 0, "resnet.batch_size = 0; allowed: an integer >= 1"),
    (TRAIN, "resnet.lr", "abc", "resnet.lr = abc; allowed: a number > 0"),
    (TRAIN, "resnet.epochs", -1, "resnet.epochs = -1; allowed: an integer >= 1"),
    (TRAIN, "resnet.lerning_rate", 0.1, "resnet.lerning_rate is not a known key of resnet"),
    (TRAIN, "resnet.precision", "bf32", "one of auto, fp32, bf16, fp16"),
    (TRAIN, "resnet.stem", "vgg", "one of torchvision, cifar"),
    (TRAIN, "resnet.schedule", "linear", "resnet.schedule = linear"),
    (TRAIN, "resnet.momentum", 1.5, "resnet.momentum = 1.5"),
    (TRAIN, "resnet.sync_bn", "yes", "true or false"),
    (TRAIN, "resnet.deterministic", 1, "resnet.deterministic = 1; allowed: true or false"),
    (TRAIN, "resnet.input_size", 16, "an integer >= 32"),
    (TRAIN, "resnet.warmup_epochs", 30, "resnet.warmup_epochs = 30 is longer than resnet.epochs"),
    (TRAIN, "resnet.launch.nnodes", 0, "resnet.launch.nnodes = 0"),
    (TRAIN, "resnet.keep_epochs", "some", "all or a list of distinct values"),
    (TRAIN, "resnet.keep_epochs", [0, 7], "resnet.keep_epochs = [0, 7]"),
    (TRAIN, "resnet.keep_epochs", [7], "drops the weights of epoch(s) 18, which eval.epochs = [7, 18] evaluates"),
    (TRAIN, "resnet.compile", "fast", "one of false, default, reduce-overhead, max-autotune"),
    (TRAIN, "resnet.launch.backend", "mpi", "one of auto, nccl, gloo"),
    (TRAIN, "resnet_runs.cpu.gpus", -1, "resnet_runs.cpu.gpus = -1"),
    (TRAIN, "resnet_runs.cpu.procs", 0, "resnet_runs.cpu.procs = 0"),
    (TRAIN, "resnet_runs.cpu.procs", 3, "resnet.batch_size=256 does not split evenly over 3 processes (resnet_runs.cpu.procs = 3)"),
    (TRAIN, "resnet_runs.cpu.threads", 2, "resnet_runs.cpu.threads is not a known key"),
    (TRAIN, "resnet_runs.cpu", "fast", "resnet_runs.cpu = fast"),
    (TRAIN, "resnet_runs", {}, "resnet_runs = {}"),
    (TRAIN, "devices", -1, "devices = -1; allowed: an integer >= 0"),
    (TRAIN, "devices", "two", "devices = two"),
    (EVAL, "eval.run", "tpu", "auto or a key of resnet_runs (cpu, gpu1, gpu8)"),
    (EVAL, "eval.epochs", [0], "eval.epochs = [0]"),
    (EVAL, "eval.epochs", "some", "all or a list"),
    (EVAL, "eval.epochs", [7, 25], "asks for epoch 25, but resnet.epochs = 20"),
    (EVAL, "eval.batch_size", 0, "eval.batch_size = 0"),
    (EVAL, "eval.epoch", [7], "eval.epoch is not a known key of eval (did you mean epochs?)"),
    (["diff_predictions.py"], "diff.a", 3, "diff.a = 3 is not among eval.epochs [7, 18]"),
    (["diff_predictions.py"], "diff.b", "last", "diff.b = last"),
    (["diff_predictions.py"], "diff.grid_images", -1, "diff.grid_images = -1"),
    (["prepare_corpus.py"], "wordlm.corpus", "wikitext", "one of sample, data"),
    (["prepare_corpus.py"], "wordlm.data_md5", "xyz", "md5 hex digest"),
    (["prepare_corpus.py"], "wordlm.sample.topics", 0, "wordlm.sample.topics = 0"),
    (["prepare_corpus.py"], "wordlm.sample.long_range", "yes", "true or false"),
    (LM, "wordlm.train.bptt", 1, "wordlm.train.bptt = 1; allowed: an integer >= 2"),
    (LM, "wordlm.train.eval_stride", 35, "eval_stride = 35 must be smaller than wordlm.train.eval_context"),
    (LM, "wordlm.train.clip", 0, "wordlm.train.clip = 0; allowed: a number > 0"),
    (LM, "wordlm.models.lstm.type", "LSTMX", "one of LSTM, GRU, RNN_TANH, RNN_RELU, Transformer, GCNN"),
    (LM, "wordlm.models.lstm.lr", 0, "wordlm.models.lstm.lr = 0"),
    (LM, "wordlm.models.lstm.nhead", 2, "wordlm.models.lstm.nhead is not a known key"),
    (LM, "wordlm.models.lstm.optimizer", "adam", "one of sgd, adamw"),
    (LM, "wordlm.models.lstm", DELETE, "wordlm.models.lstm is missing (it has: transformer, gcnn"),
    (["train_wordlm.py", "--model", "transformer"], "wordlm.models.transformer.nhead", 3, "does not divide emsize"),
    (["train_wordlm.py", "--model", "gcnn"], "wordlm.models.gcnn.dilations", [], "wordlm.models.gcnn.dilations = []"),
    (["generate_text.py"], "generate.model", "gru", "a key of wordlm.models (lstm, transformer, gcnn"),
    (["generate_text.py"], "generate.temperature", 0, "a number >= 0.001"),
    (["generate_text.py"], "generate.words", 0, "generate.words = 0"),
    (["generate_text.py"], "generate.prompt", 5, "generate.prompt = 5"),
    (["context_probe.py"], "context_probe.split", "dev", "one of train, valid, test"),
    (["context_probe.py"], "context_probe.targets", 0, "context_probe.targets = 0"),
    (["context_probe.py"], "context_probe.tolerance", 0, "context_probe.tolerance = 0"),
    (["context_probe.py"], "context_probe.distances", [500], "has no distance below reference_context = 35"),
    (["context_probe.py"], "context_probe.bootstrap", 1, "context_probe.bootstrap = 1; allowed: an integer >= 10"),
    (["train_wordlm.py", "--model", "transformer_long"], "wordlm.models.transformer_long.eval_stride", 128,
     "eval_stride 128 must be smaller than eval_context 128"),
    (["train_wordlm.py", "--model", "lstm_long"], "wordlm.models.lstm_long.bptt", 1, "wordlm.models.lstm_long.bptt = 1"),
    (["context_probe.py"], "context_probe.models", ["gru"], "context_probe.models lists gru"),
    (["report.py"], "resnet.lr", "abc", "resnet.lr = abc"),
    (["lm_cost.py"], "lm_cost.lengths", [64, 128], "lm_cost.lengths = [64, 128]; allowed: a list of distinct values, "
     "each an integer >= 2, at least 3"),
    (["lm_cost.py"], "lm_cost.models", ["gcnn", "lstm"], "names no Transformer"),
    (["lm_cost.py"], "lm_cost.models", ["transformer", "gru"], "lm_cost.models lists gru"),
    (["lm_cost.py"], "lm_cost.repeats", 0, "lm_cost.repeats = 0"),
    (["claims.py"], "claims.bootstrap", 10, "claims.bootstrap = 10; allowed: an integer >= 100"),
    (["claims.py"], "claims.sed", 1, "claims.sed is not a known key of claims (did you mean seed?)"),
]

# Outputs that exist before each bad run and must be exactly as they were after it.
EXISTING = ["runs/resnet/cpu/checkpoints/epoch_01.pt", "runs/resnet/cpu/dvclive/metrics.json",
            "runs/eval/predictions_epoch_07.csv", "reports/diff_predictions/diff_grid.png",
            "datasets/corpus/train.txt", "runs/wordlm/lstm/model.pt", "reports/generated.txt",
            "reports/context_probe/findings.md", "reports/report/report.md", "datasets/tiny-imagenet-200/wnids.txt",
            "metrics/train_resnet_cpu.json", "metrics/eval.json", "reports/claims.md", "reports/lm_cost/cost.csv"]


def with_value(params: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(params))
    *parents, last = dotted.split(".")
    node = out
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


def snapshot(root) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "params.yaml"}


def test_the_committed_params_are_valid():
    schema.validate(BASE, [])  # every section, every cross-key check
    assert set(BASE) == set(schema.SCHEMA), "every params.yaml section has a schema, and only those"


def test_each_section_is_one_typed_object_with_every_value_of_the_file():
    """load_params types every section (a dataclass per section, a dict of them per mapping of
    names); the objects hold exactly the file's values, and their defaults only where a key is absent."""
    import dataclasses

    loaded = schema.load_params(REPO / "params.yaml")

    def within(typed, raw, key):
        if dataclasses.is_dataclass(typed):
            names = {f.name for f in dataclasses.fields(typed)}
            assert set(raw) <= names, (key, set(raw) - names)
            for name in names - set(raw):  # absent: the field's default, the one place it is written
                field = next(f for f in dataclasses.fields(typed) if f.name == name)
                assert getattr(typed, name) == field.default, (key, name)
            for name, value in raw.items():
                within(getattr(typed, name), value, f"{key}.{name}")
        elif isinstance(raw, dict):
            assert set(typed) == set(raw), key
            for name, value in raw.items():
                within(typed[name], value, f"{key}.{name}")
        else:
            assert typed == raw and type(typed) is type(raw), (key, typed, raw)

    for section in schema.SCHEMA:
        within(loaded[section], BASE[section], section)
    assert isinstance(loaded["resnet"], schema.ResnetParams) and loaded["resnet"].launch.backend == "auto"
    assert isinstance(loaded["wordlm"].models["transformer"], schema.TransformerParams)
    assert loaded["resnet_runs"]["gpu1"].procs == 1  # resnet_runs.gpu1 sets no procs


def test_every_section_has_bad_value_rows():
    covered = {key.split(".")[0] for _, key, _, _ in BAD}
    assert covered == set(schema.SCHEMA)


def test_bad_values_are_one_error_line_and_touch_nothing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(STAGES))
    monkeypatch.chdir(tmp_path)
    for name in EXISTING:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"earlier result {name}")
    before = snapshot(tmp_path)
    failures = []
    for script_and_args, key, value, expected in BAD:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(BASE, key, value), sort_keys=False))
        status, stderr = run_stage_in_process(script_and_args)
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        case = f"{script_and_args[0]} with {key} = {value!r}"
        if status != 1 or len(errors) != 1 or "Traceback" in stderr:
            failures.append(f"{case}: exit {status}, stderr:\n{stderr}")
        elif expected not in errors[0] or key.split(".")[-1] not in errors[0]:
            failures.append(f"{case}: the error does not say {expected!r}: {errors[0]}")
        if snapshot(tmp_path) != before:
            failures.append(f"{case}: changed files in the workspace")
    assert not failures, "\n\n".join(failures)


def test_a_check_across_keys_stops_the_stage_that_needs_it():
    """The issue's case: -S resnet.epochs=2 train_resnet@cpu was refused by training because eval.epochs
    asks for epoch 18; training is the expensive step, so eval_epochs (which needs those epochs) refuses."""
    short = with_value(BASE, "resnet.epochs", 2)
    schema.validate(short, ["resnet", "resnet_runs", "devices"])  # what train_resnet validates
    with pytest.raises(schema.ParamsError, match=r"eval.epochs = \[7, 18\] asks for epoch 18, but resnet.epochs = 2"):
        schema.validate(short, ["eval"])  # what eval_epochs validates


def test_numbers_read_as_dvc_reads_them(tmp_path):
    """DVC reads params.yaml as YAML 1.2, where 1e-4 is a number; so do the stages."""
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("weight_decay: 0.0001", "weight_decay: 1e-4"))
    assert schema.load_params(path, "resnet")["resnet"].weight_decay == 1e-4


# Plain scalars that YAML 1.1 (PyYAML) and YAML 1.2 (DVC's ruamel.yaml) read differently, and some
# that they read alike.
SCALARS = ["yes", "no", "on", "off", "Yes", "OFF", "y", "n", "true", "False", "010", "0o10", "0x1F", "0b11", "1_000",
           "1e-4", "1E4", "1.5e3", ".5", "1:30", "-1:30", "190:20:30", "~", "null", "", ".inf", "-.inf", "'yes'",
           '"010"', "2001-12-14", "[yes, 010, 1e-4]", "{a: on}"]


def test_params_are_read_with_dvcs_own_parser(tmp_path):
    """read_params gives what DVC's reader (the one behind dvc.lock and `dvc params diff`) gives."""
    from dvc.utils.serialize import load_yaml

    path = tmp_path / "params.yaml"
    path.write_text("".join(f"k{i}: {value}\n" for i, value in enumerate(SCALARS)))
    ours, dvcs = schema.read_params(path), load_yaml(str(path))
    assert ours == dvcs and [type(v) for v in ours.values()] == [type(v) for v in dvcs.values()]
    assert ours["k0"] == "yes" and ours["k10"] == 10 and ours["k15"] == 1e-4 and ours["k19"] == "1:30"


# -S values DVC writes into params.yaml as YAML 1.2 reads them and PyYAML does not (yes/no/on/off,
# 1:30), or as it quotes them (010), or as a number (1e-4: 0.0001)
SET_VALUES = ["yes", "no", "on", "off", "010", "1e-4", "1:30"]


def test_dvc_exp_run_set_values_reach_the_stage_as_dvc_records_them(reproduced):
    """The issue's case: `dvc exp run -S generate.prompt=yes generate_text` recorded the string
    "yes" in dvc.lock while the stage read true and refused it. Now the stage sees what DVC
    records: the prompt it prints (or, for a value the stage refuses, the value its error names)
    is the one in dvc.lock (or in params.yaml as DVC reads it)."""
    from dvc.utils.serialize import load_yaml

    p = reproduced
    try:
        for value in SET_VALUES:
            result = run(["dvc", "exp", "run", "-S", f"generate.prompt={value}", "generate_text"], cwd=p, check=False)
            out = result.stdout + result.stderr
            assert ran(out, "generate_text") and "Traceback" not in out, out
            recorded = load_yaml(str(p / "params.yaml"))["generate"]["prompt"]  # what DVC reads and records
            if isinstance(recorded, str):
                assert result.returncode == 0, out
                lock = load_yaml(str(p / "dvc.lock"))["stages"]["generate_text"]["params"]["params.yaml"]
                assert lock["generate"]["prompt"] == recorded == value, lock
                assert f"from the prompt {json.dumps(recorded)} ->" in result.stdout, out
            else:  # 1e-4: a number, which generate.prompt does not allow - and the error names it as DVC has it
                assert recorded == 1e-4 and result.returncode != 0, out
                errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
                assert errors == ["error: params.yaml: generate.prompt = 0.0001; allowed: null or a non-empty string"], out
    finally:
        restore_committed(p)


def test_unreadable_params_file_is_a_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("resnet: {lr: [0.1\n")
    with pytest.raises(schema.ParamsError, match=r"not valid YAML at line \d+.*git checkout"):
        schema.load_params(path, "resnet")
    with pytest.raises(schema.ParamsError, match="no such file"):
        schema.load_params(tmp_path / "absent.yaml")


def digests(folder) -> dict[str, str]:
    import hashlib

    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def test_dvc_exp_run_with_a_bad_value_moves_no_checkpoint(reproduced):
    """The issue's case: -S resnet.epochs=-1 used to move the trained checkpoints aside. Now: one
    error line, the checkpoints where they were, and the note's commands bring back the rest."""
    p = reproduced
    checkpoints = p / "runs/resnet/cpu/checkpoints"
    before = digests(checkpoints)
    siblings = sorted(x.name for x in (p / "runs/resnet").iterdir())
    try:
        result = run(["dvc", "exp", "run", "-S", "resnet.epochs=-1", "train_resnet@cpu"], cwd=p, check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0 and ran(out, "train_resnet@cpu"), out
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert errors == ["error: params.yaml: resnet.epochs = -1; allowed: an integer >= 1"], out
        assert "Traceback" not in out
        assert digests(checkpoints) == before
        assert sorted(x.name for x in (p / "runs/resnet").iterdir()) == siblings, "nothing moved aside"
        # DVC removed the stage's metrics file before running it; the note says how to get it back.
        assert "`dvc checkout train_resnet@cpu` (and `git checkout metrics`" in result.stderr
        run("git checkout params.yaml && dvc checkout train_resnet@cpu && git checkout metrics", cwd=p)
        assert run(["dvc", "status", "train_resnet@cpu"], cwd=p).stdout.strip().endswith("up to date.")
    finally:
        restore_committed(p)


def test_the_editor_schema_is_current_and_params_yaml_points_at_it(tmp_path):
    """params.schema.json is the sections' JSON Schema as the models give it (after changing a section:
    python -m dlreport.params, run here in a fresh clone: it rewrites the committed file byte for byte),
    and params.yaml's first line points YAML language servers at it."""
    committed = json.loads((REPO / "params.schema.json").read_text())
    assert committed == schema.json_schema(), "params.schema.json is stale: run python -m dlreport.params"
    clone = make_project(tmp_path / "clone")
    (clone / "params.schema.json").unlink()
    assert run("python -m dlreport.params", cwd=clone).stdout.startswith("wrote ")
    assert run("git status --porcelain", cwd=clone).stdout == "", "the command rewrites the committed schema"
    assert (REPO / "params.yaml").read_text().splitlines()[0] == "# yaml-language-server: $schema=params.schema.json"
    assert set(committed["properties"]) == set(BASE) and committed["additionalProperties"] is False
    # what an editor flags: the constraints the stages check, in the schema's own words
    resnet = committed["$defs"]["ResnetParams"]
    assert resnet["additionalProperties"] is False and resnet["properties"]["lr"]["exclusiveMinimum"] == 0
    assert resnet["properties"]["precision"]["enum"] == ["auto", "fp32", "bf16", "fp16"]
    models = committed["$defs"]["WordLMParams"]["properties"]["models"]
    assert set(next(iter(models["patternProperties"].values()))["discriminator"]["mapping"]) == {
        "LSTM", "GRU", "RNN_TANH", "RNN_RELU", "Transformer", "GCNN"}


def test_dvc_reads_params_yaml_as_without_the_schema_line(tmp_path):
    """The schema line is a YAML comment: DVC's reader gives the same params with or without it."""
    from dvc.utils.serialize import load_yaml

    text = (REPO / "params.yaml").read_text()
    (tmp_path / "without.yaml").write_text(text.split("\n", 1)[1])
    assert load_yaml(str(REPO / "params.yaml")) == load_yaml(str(tmp_path / "without.yaml")) == BASE


# Values the old hand-written rules refused that pydantic's lax defaults would take (a float for an
# integer, 0 for false, 1 for true, nan): still one error line each, worded as before.
STRICT = [("resnet.epochs", 2.0, "resnet.epochs = 2.0; allowed: an integer >= 1"),
          ("resnet.compile", 0, "resnet.compile = 0; allowed: one of false, default, reduce-overhead, max-autotune"),
          ("resnet.sync_bn", 1, "resnet.sync_bn = 1; allowed: true or false"),
          ("resnet.momentum", True, "resnet.momentum = true; allowed: a number >= 0 and <= 1"),
          ("resnet.lr", float("nan"), "resnet.lr = .nan; allowed: a number > 0"),
          ("context_probe.distances", [1, 1], "context_probe.distances = [1, 1] repeats a value"),
          ("wordlm.models.gcnn.dilations", [1, 0], "dilations = [1, 0]: item 0 is not allowed; each must be an integer >= 1"),
          ("resnet_runs", {"a b": {"gpus": 0, "needs": "x"}}, "resnet_runs: the name a b is not allowed"),
          ("wordlm.models.lstm.type", "LSTMX", "(did you mean LSTM?)"),
          ("wordlm.models.lstm", {"emsize": 1}, "wordlm.models.lstm.type = null; allowed: one of LSTM, GRU"),
          ("resnet.launch", DELETE, "resnet.launch is missing; set it in params.yaml to a mapping with keys nnodes, "
                                    "rdzv_endpoint, backend")]


@pytest.mark.parametrize("key, value, expected", STRICT, ids=[k for k, _, _ in STRICT])
def test_values_pydantic_would_coerce_are_refused(key, value, expected):
    with pytest.raises(schema.ParamsError) as error:
        schema.validate(with_value(BASE, key, value), [key.split(".")[0]])
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_numbers_keep_the_type_written_and_the_models_stay_frozen_dataclasses():
    import dataclasses

    loaded = schema.load_params(REPO / "params.yaml", "wordlm.models.lstm", "resnet")
    assert type(loaded["wordlm.models.lstm"].lr) is int and type(loaded["resnet"].lr) is float  # lr: 20, lr: 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded["resnet"].lr = 1.0
    with pytest.raises(schema.ParamsError, match=r"resnet.warmup_epochs = 30 is longer than resnet.epochs = 20"):
        schema.parse("resnet", {**BASE["resnet"], "warmup_epochs": 30})


def test_the_training_library_imports_without_pydantic():
    """The lent GPU machine's image has no pydantic (nor ruamel.yaml): the modules benchmarks/gpu_check.py
    trains with take the params' types for annotations only."""
    import subprocess
    import sys

    code = ("import sys\nfor name in ('pydantic', 'ruamel'): sys.modules[name] = None\n"
            "import dlreport.training, dlreport.checkpoints, dlreport.tinyimagenet, dlreport.models, dlreport.devices")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
