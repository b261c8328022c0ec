"""data.dvc: the WikiText-2 HTTP import. A local HTTP server on 127.0.0.1 stands in for
wikitext.smerity.com, serving an archive in the official layout built from the real shared
WikiText-2 text; `dvc update data.dvc` fetches it and the LM stages train on it."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_PARAMS, WIKITEXT_SAMPLE, deep_update, make_project, needs_shared, run
from dlreport.params import read_params
from dlreport.wordlm.corpus import OFFICIAL_MD5, OFFICIAL_URL, SPLITS, tokenize

LINES = 150  # lines of each real split served (keeps the test to seconds)


def test_data_dvc_is_an_http_import_without_data():
    record = yaml.safe_load((REPO / "data.dvc").read_text())
    assert record["frozen"] is True
    assert record["deps"] == [{"path": OFFICIAL_URL, "hash": "md5"}]
    assert record["outs"] == [{"path": "data/wikitext-2-v1.zip", "hash": "md5", "cache": False}]
    assert "md5" in record  # DVC's own shape, so the commands that read it never rewrite it
    params = read_params(REPO / "params.yaml")
    assert params["wordlm"]["data_md5"] == OFFICIAL_MD5 == "542ccefacc6c27f945fb54453812b3cd"
    assert params["wordlm"]["corpus"] == "sample"


@pytest.fixture
def server(tmp_path: Path):
    """Serve tmp_path/served on 127.0.0.1; yields (folder, base url)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@needs_shared(WIKITEXT_SAMPLE)
def test_update_fetches_the_archive_and_the_stages_train_on_it(tmp_path: Path, server):
    served, base = server
    texts = {s: "".join((WIKITEXT_SAMPLE / f"{s}.txt").read_text().splitlines(keepends=True)[:LINES]) for s in SPLITS}
    archive = served / "wikitext-2-v1.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for split in SPLITS:
            z.writestr(f"wikitext-2/wiki.{split}.tokens", texts[split])
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    overrides = deep_update(TINY_PARAMS, {"wordlm": {"data_md5": md5, "train": {"epochs": 1, "batch_size": 20}}})
    project = make_project(tmp_path / "project", overrides, git=False)
    data_dvc = project / "data.dvc"
    data_dvc.write_text(data_dvc.read_text().replace(OFFICIAL_URL, f"{base}/wikitext-2-v1.zip"))
    run("git init -q -b main && git add -A && git commit -qm project", cwd=project)

    # Before the update: corpus=data is a clear error, and nothing was downloaded.
    failed = run(["dvc", "exp", "run", "-S", "wordlm.corpus=data", "prepare_corpus"], cwd=project, check=False)
    assert failed.returncode != 0 and "dvc update data.dvc" in failed.stdout + failed.stderr
    run("git checkout -q params.yaml", cwd=project)

    run(["dvc", "update", "data.dvc"], cwd=project)
    fetched = project / "data" / "wikitext-2-v1.zip"
    assert hashlib.md5(fetched.read_bytes()).hexdigest() == md5
    record = yaml.safe_load(data_dvc.read_text())
    assert record["outs"][0]["md5"] == md5  # the update recorded the archive's hash

    # generate_text uses the LSTM: its upstream is prepare_corpus and train_wordlm@lstm
    out = run(["dvc", "exp", "run", "-S", "wordlm.corpus=data", "generate_text"], cwd=project).stdout
    assert "Running stage 'train_wordlm@lstm'" in out and "Running stage 'generate_text'" in out
    stats = json.loads((project / "metrics" / "corpus.json").read_text())
    assert stats["source"] == "data" and stats["md5"] == md5
    for split in SPLITS:
        assert stats[f"{split}_tokens"] == len(tokenize(texts[split]))
    vocab = {w for s in SPLITS for w in tokenize(texts[s])}
    assert stats["vocab_size"] == len(vocab)
    assert set((project / "reports" / "generated.txt").read_text().split()) <= vocab
    trained = json.loads((project / "metrics" / "train_wordlm_lstm.json").read_text())
    assert 1 < trained["test_ppl"] < len(vocab)

    # The archive must be the pinned one: an md5 mismatch is a clear error.
    failed = run(["dvc", "exp", "run", "-S", f"wordlm.data_md5={OFFICIAL_MD5}", "prepare_corpus"], cwd=project, check=False)
    assert failed.returncode != 0
    assert "does not match the expected 542ccefacc6c27f945fb54453812b3cd (param wordlm.data_md5)" in failed.stderr
