"""download_tinyimagenet and relabel_val: the sample, the real subset, and every bad input."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_ZIP, TINY_ZIP_MD5, needs_shared, run_stage, make_project, TINY_PARAMS
from dlreport import tinyimagenet as ti
from dlreport.tinyimagenet import DatasetError

SMALL = dict(seed=3, train_per_class=2, val_per_class=1, test_images=3, grayscale_fraction=0.05, noise=1.0)


def tree_digest(root: Path) -> str:
    h = hashlib.md5()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    return ti.generate_sample(tmp_path_factory.mktemp("sample") / "tiny-imagenet-200", **SMALL)


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    if not TINY_ZIP.exists():
        pytest.skip(f"real test data {TINY_ZIP} is absent (it lives in ../shared/data)")
    out = tmp_path_factory.mktemp("real") / "tiny-imagenet-200"
    return ti.download_archive(TINY_ZIP.as_uri(), out, TINY_ZIP_MD5)


def copy_of(root: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy" / "tiny-imagenet-200"
    shutil.copytree(root, dest)
    return dest


# ---------------------------------------------------------------------------- the sample
def test_sample_has_the_official_layout(sample_root: Path):
    wnids = sample_root.joinpath("wnids.txt").read_text().split()
    assert len(wnids) == 200 == len(set(wnids))
    words = dict(line.split("\t") for line in sample_root.joinpath("words.txt").read_text().splitlines())
    assert set(wnids) <= set(words) and len(words) > 200
    for wnid in wnids:
        images = sorted((sample_root / "train" / wnid / "images").glob("*.JPEG"))
        assert [p.name for p in images] == [f"{wnid}_{i}.JPEG" for i in range(2)]
        boxes = (sample_root / "train" / wnid / f"{wnid}_boxes.txt").read_text().splitlines()
        assert [b.split("\t")[0] for b in boxes] == [p.name for p in images]
    annotations = pd.read_csv(sample_root / "val" / "val_annotations.txt", sep="\t", header=None)
    assert len(annotations) == 200 and annotations[1].value_counts().eq(1).all()
    assert all((sample_root / "val" / "images" / f).is_file() for f in annotations[0])
    assert len(list((sample_root / "test" / "images").glob("test_*.JPEG"))) == 3
    from PIL import Image

    modes = {Image.open(p).mode for p in sample_root.rglob("*.JPEG")}
    sizes = {Image.open(p).size for p in sample_root.rglob("*.JPEG")}
    assert modes == {"RGB", "L"} and sizes == {(64, 64)}


def test_sample_is_deterministic(tmp_path: Path, sample_root: Path):
    again = ti.generate_sample(tmp_path / "again", **SMALL)
    assert tree_digest(again) == tree_digest(sample_root)
    other = ti.generate_sample(tmp_path / "other", **{**SMALL, "seed": 4})
    assert tree_digest(other) != tree_digest(sample_root)


# ---------------------------------------------------------------------------- download
@needs_shared(TINY_ZIP)
def test_file_url_download_gives_the_official_tree(real_root: Path):
    assert len(real_root.joinpath("wnids.txt").read_text().split()) == 200
    assert len(list((real_root / "train").glob("*/images/*.JPEG"))) == 2000
    assert len(list((real_root / "val" / "images").glob("*.JPEG"))) == 1000


@needs_shared(TINY_ZIP)
def test_http_download_with_md5(tmp_path: Path):
    """download_url (torchvision) over real HTTP, served from loopback."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(TINY_ZIP, served / "tiny-imagenet-200.zip")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tiny-imagenet-200.zip"
        root = ti.download_archive(url, tmp_path / "out" / "tiny-imagenet-200", TINY_ZIP_MD5)
        assert len(list((root / "val" / "images").glob("*.JPEG"))) == 1000
        with pytest.raises(DatasetError, match="missing.zip"):
            ti.download_archive(url.replace("tiny-imagenet-200.zip", "missing.zip"),
                                tmp_path / "out2" / "tiny-imagenet-200", None)
        assert leftovers(tmp_path / "out2") == []
    finally:
        server.shutdown()


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@needs_shared(TINY_ZIP)
def test_wrong_checksum_is_rejected_and_leaves_nothing(tmp_path: Path):
    out = tmp_path / "out" / "tiny-imagenet-200"
    with pytest.raises(DatasetError) as error:
        ti.download_archive(TINY_ZIP.as_uri(), out, "0" * 32)
    message = str(error.value)
    assert TINY_ZIP.name in message and TINY_ZIP_MD5 in message and "tinyimagenet.md5" in message
    assert leftovers(out.parent) == []


@needs_shared(TINY_ZIP)
def test_truncated_archive_is_rejected(tmp_path: Path):
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(TINY_ZIP.read_bytes()[: TINY_ZIP.stat().st_size // 2])
    out = tmp_path / "out" / "tiny-imagenet-200"
    with pytest.raises(DatasetError, match="truncated.zip: not a zip archive"):
        ti.download_archive(truncated.as_uri(), out, None)
    assert leftovers(out.parent) == []


def test_corrupt_member_is_rejected(tmp_path: Path):
    archive = make_zip(tmp_path / "corrupt.zip", {"tiny-imagenet-200/wnids.txt": b"n01\n" * 100})
    data = bytearray(archive.read_bytes())
    data[data.index(b"n01\nn01") + 5] ^= 0xFF  # flip a byte inside the stored member
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupt"):
        ti.download_archive(archive.as_uri(), tmp_path / "out" / "tiny-imagenet-200", None)
    assert leftovers(tmp_path / "out") == []


def test_non_zip_and_wrong_layout_are_rejected(tmp_path: Path):
    text = tmp_path / "page.zip"
    text.write_text("<html>not found</html>")
    with pytest.raises(DatasetError, match="not a zip archive"):
        ti.download_archive(text.as_uri(), tmp_path / "a" / "tiny-imagenet-200", None)
    other = make_zip(tmp_path / "other.zip", {"cifar/readme.txt": b"x"})
    with pytest.raises(DatasetError, match="no top folder tiny-imagenet-200/ .*cifar"):
        ti.download_archive(other.as_uri(), tmp_path / "b" / "tiny-imagenet-200", None)
    partial = make_zip(tmp_path / "partial.zip", {"tiny-imagenet-200/wnids.txt": b"n01\n"})
    with pytest.raises(DatasetError, match="partial.zip: not the Tiny-ImageNet layout, missing words.txt"):
        ti.download_archive(partial.as_uri(), tmp_path / "c" / "tiny-imagenet-200", None)
    for name in "abc":
        assert leftovers(tmp_path / name) == []


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil.txt", "tiny-imagenet-200/../../evil.txt"])
def test_entries_outside_the_output_are_rejected(tmp_path: Path, entry: str):
    archive = make_zip(tmp_path / "evil.zip", {"tiny-imagenet-200/wnids.txt": b"n01\n", entry: b"x"})
    with pytest.raises(DatasetError, match="outside the output folder"):
        ti.download_archive(archive.as_uri(), tmp_path / "out" / "tiny-imagenet-200", None)
    assert not (tmp_path / "evil.txt").exists() and leftovers(tmp_path / "out") == []


def test_missing_local_archive_and_unknown_scheme(tmp_path: Path):
    with pytest.raises(DatasetError, match="no such file.*tinyimagenet.source"):
        ti.download_archive((tmp_path / "nope.zip").as_uri(), tmp_path / "o" / "t", None)
    with pytest.raises(DatasetError, match="neither 'sample' nor"):
        ti.download_archive("ftp://example.com/x.zip", tmp_path / "o" / "t", None)


def test_failed_download_keeps_the_previous_output(tmp_path: Path, sample_root: Path):
    out = tmp_path / "out" / "tiny-imagenet-200"
    shutil.copytree(sample_root, out)
    before = tree_digest(out)
    with pytest.raises(DatasetError):
        ti.download_archive((tmp_path / "nope.zip").as_uri(), out, None)
    assert tree_digest(out) == before and leftovers(out.parent) == ["tiny-imagenet-200"]


# ---------------------------------------------------------------------------- relabel
def check_prepared(prepared: Path, root: Path, n_train: int, n_val: int) -> None:
    classes = pd.read_csv(prepared / "classes.csv", keep_default_na=False)
    wnids = sorted(root.joinpath("wnids.txt").read_text().split())
    assert list(classes.wnid) == wnids and list(classes.class_index) == list(range(200))
    words = dict(line.split("\t") for line in root.joinpath("words.txt").read_text().splitlines())
    assert all(classes.name == [words[w] for w in wnids])
    for split, n in (("train", n_train), ("val", n_val)):
        table, images = ti.load_split(prepared, split)
        assert len(table) == n and images.shape == (n, 3, 64, 64) and images.dtype == np.uint8
        assert list(table.columns) == ti.COLUMNS
        assert (table.class_index == table.wnid.map(dict(zip(classes.wnid, classes.class_index)))).all()
        assert all((root / p).is_file() for p in table.path)
    val = pd.read_csv(root / "val" / "val_annotations.txt", sep="\t", header=None,
                      names=["file", "wnid", "x0", "y0", "x1", "y1"])
    table, images = ti.load_split(prepared, "val")
    merged = table.assign(file=table.path.str.split("/").str[-1]).merge(val, on="file")
    assert (merged.wnid_x == merged.wnid_y).all() and (merged.x0_x == merged.x0_y).all()
    # Decoded pixels are exactly PIL's RGB conversion of the file.
    from PIL import Image

    first = np.asarray(Image.open(root / table.path[0]).convert("RGB")).transpose(2, 0, 1)
    assert (images[0] == first).all()


def test_relabel_sample(tmp_path: Path, sample_root: Path, capsys):
    summary = ti.relabel(sample_root, tmp_path / "prepared")
    assert summary == {"classes": 200, "train_images": 400, "val_images": 200}
    check_prepared(tmp_path / "prepared", sample_root, 400, 200)
    # Progress, with stderr not a terminal (as under dvc queue or CI): a plain line per tenth, no bar.
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == (
        [f"decoding train images: {40 * i}/400 images" for i in range(1, 11)]
        + [f"decoding val images: {20 * i}/200 images" for i in range(1, 11)]), lines
    assert lines[0].endswith(" s)") and ", ETA " in lines[0] and "\r" not in "".join(lines)


@needs_shared(TINY_ZIP)
def test_relabel_real_subset(tmp_path: Path, real_root: Path):
    ti.relabel(real_root, tmp_path / "prepared")
    check_prepared(tmp_path / "prepared", real_root, 2000, 1000)
    # The real subset holds grayscale images; they become 3 identical channels.
    from PIL import Image

    table, images = ti.load_split(tmp_path / "prepared", "train")
    gray = [i for i, p in enumerate(table.path) if Image.open(real_root / p).mode == "L"]
    assert gray, "the real subset is documented to contain grayscale images"
    assert (images[gray[0], 0] == images[gray[0], 1]).all()


def _bad(tmp_path: Path, root: Path, corrupt) -> tuple[str, Path]:
    bad = copy_of(root, tmp_path)
    corrupt(bad)
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError) as error:
        ti.relabel(bad, out)
    assert not out.exists() and leftovers(tmp_path) == ["copy"], "no output may be left behind"
    return str(error.value), bad


def test_truncated_wnids_is_rejected(tmp_path: Path, sample_root: Path):
    def corrupt(root):
        wnids = root.joinpath("wnids.txt").read_text().splitlines()
        root.joinpath("wnids.txt").write_text("\n".join(wnids[:150]) + "\n")
    message, root = _bad(tmp_path, sample_root, corrupt)
    assert str(root / "wnids.txt") in message and "50 more" in message and "restore" in message


def test_unknown_wnid_in_annotations_is_rejected(tmp_path: Path, sample_root: Path):
    def corrupt(root):
        path = root / "val" / "val_annotations.txt"
        lines = path.read_text().splitlines()
        lines[7] = "\t".join([lines[7].split("\t")[0], "n99999999"] + lines[7].split("\t")[2:])
        path.write_text("\n".join(lines) + "\n")
    message, root = _bad(tmp_path, sample_root, corrupt)
    assert "val_annotations.txt" in message and "n99999999" in message and "val_7.JPEG" in message


def test_missing_listed_image_is_rejected(tmp_path: Path, sample_root: Path):
    message, root = _bad(tmp_path, sample_root, lambda r: (r / "val" / "images" / "val_5.JPEG").unlink())
    assert str(root / "val" / "images" / "val_5.JPEG") in message and "Re-extract" in message


def test_duplicate_rows_are_rejected(tmp_path: Path, sample_root: Path):
    def corrupt(root):
        path = root / "val" / "val_annotations.txt"
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines + [lines[3]]) + "\n")
    message, _ = _bad(tmp_path, sample_root, corrupt)
    assert "val_annotations.txt" in message and "val_3.JPEG is listed 2 times" in message


def test_unreadable_image_is_rejected(tmp_path: Path, sample_root: Path):
    wnid = sorted(sample_root.joinpath("wnids.txt").read_text().split())[4]
    target = f"train/{wnid}/images/{wnid}_1.JPEG"
    message, root = _bad(tmp_path, sample_root, lambda r: (r / target).write_bytes(b"\xff\xd8 not a jpeg"))
    assert str(root / target) in message and "unreadable image" in message


def test_missing_annotation_file_is_rejected(tmp_path: Path, sample_root: Path):
    message, root = _bad(tmp_path, sample_root, lambda r: (r / "val" / "val_annotations.txt").unlink())
    assert "val_annotations.txt" in message


def test_malformed_annotation_is_rejected(tmp_path: Path, sample_root: Path):
    def corrupt(root):
        path = root / "val" / "val_annotations.txt"
        lines = path.read_text().splitlines()
        lines[2] = lines[2].rsplit("\t", 1)[0] + "\tabc"
        path.write_text("\n".join(lines) + "\n")
    message, _ = _bad(tmp_path, sample_root, corrupt)
    assert "val_annotations.txt, line 3" in message and "not a number" in message


def test_cmyk_and_grayscale_become_rgb(tmp_path: Path, sample_root: Path):
    from PIL import Image

    root = copy_of(sample_root, tmp_path)
    path = root / "val" / "images" / "val_0.JPEG"
    rgb = Image.open(path).convert("RGB")
    rgb.convert("CMYK").save(path, "JPEG")
    ti.relabel(root, tmp_path / "prepared")
    _, images = ti.load_split(tmp_path / "prepared", "val")
    expected = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
    assert Image.open(path).mode == "CMYK" and (images[0] == expected).all()


# ---------------------------------------------------------------------------- the stage scripts
def test_stage_scripts_report_errors_in_one_line(tmp_path: Path):
    project = make_project(tmp_path / "p", TINY_PARAMS, git=False)
    (project / "datasets" / "tiny-imagenet-200").mkdir(parents=True)
    result = run_stage("relabel_val.py", cwd=project, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "missing wnids.txt" in result.stderr
    assert not (project / "datasets" / "tinyimagenet-prepared").exists()
