"""Tiny-ImageNet-200: get the archive (or generate a sample in its layout), relabel, decode.

The official archive (http://cs231n.stanford.edu/tiny-imagenet-200.zip) unpacks to::

    tiny-imagenet-200/
      wnids.txt                         200 class ids, one per line
      words.txt                         wnid<TAB>names, for all of WordNet
      train/<wnid>/images/<wnid>_<i>.JPEG
      train/<wnid>/<wnid>_boxes.txt     file<TAB>x0<TAB>y0<TAB>x1<TAB>y1
      val/images/val_<i>.JPEG
      val/val_annotations.txt           file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
      test/images/test_<i>.JPEG         unlabelled

``generate_sample`` writes exactly that layout offline; ``download_archive`` fetches and
unpacks the real one; ``relabel`` turns either into validated tables plus the images
decoded once into uint8 arrays.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from dlreport.errors import PipelineError
from dlreport.faults import ensure_space, writing
from dlreport.fileio import atomic_dir, remove_leftovers, write_json
from dlreport.progress import progress

if TYPE_CHECKING:  # torch is imported where it is used: the data stages run without it
    import torch

    from dlreport.params import TinyImageNetParams  # annotations only: the GPU check runs without pydantic

ROOT_NAME = "tiny-imagenet-200"
IMAGE_SIZE = 64
OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


class DatasetError(PipelineError):
    """Bad input data: the message names the file and how to fix it."""


# --------------------------------------------------------------------------------------
# The generated sample
# --------------------------------------------------------------------------------------
# Each class is a combination of a shape, a colour and a background texture
# (5 x 8 x 5 = 200). An image draws its class's shape at a random place, size and angle
# with jittered colours, over the class's background, plus a distractor shape and noise.
# A network must combine all three factors to name the class, and the instance noise keeps
# it from doing so perfectly after one epoch: curves rise over the epochs, as on real data.
SHAPES = ["disc", "square", "triangle", "cross", "ring"]
COLOURS = {
    "red": (200, 40, 40), "orange": (230, 140, 30), "yellow": (220, 210, 50),
    "green": (50, 170, 60), "teal": (40, 160, 160), "blue": (50, 80, 210),
    "purple": (140, 60, 180), "white": (235, 235, 235),
}
BACKGROUNDS = ["plain", "stripes", "checks", "dots", "gradient"]


def sample_classes(seed: int) -> list[tuple[str, str]]:
    """The 200 (wnid, name) pairs of the sample, in class-index order (sorted wnids)."""
    rng = np.random.default_rng(seed)
    combos = [(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS]
    ids: set[int] = set()
    while len(ids) < len(combos):
        ids.add(int(rng.integers(1_000_000, 9_999_999)))
    wnids = [f"n0{i}" for i in sorted(ids)]
    order = rng.permutation(len(combos))  # so that index order does not follow the factors
    return [(w, f"{combos[k][1]} {combos[k][0]} on {combos[k][2]}") for w, k in zip(wnids, order)]


def _class_factors(name: str) -> tuple[str, str, str]:
    colour, shape, _, background = name.split(" ")
    return shape, colour, background


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: float) -> tuple[int, ...]:
    return tuple(int(np.clip(v + rng.normal(0, amount), 0, 255)) for v in colour)


def _background(kind: str, rng: np.random.Generator, noise: float) -> Image.Image:
    base = np.array(_jitter((110, 110, 110), rng, 25 * noise), dtype=np.float32)
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    period = rng.uniform(6, 12)
    phase = rng.uniform(0, period)
    angle = rng.uniform(-0.4, 0.4)
    if kind == "plain":
        pattern = np.zeros_like(x)
    elif kind == "stripes":
        pattern = np.sign(np.sin(2 * np.pi * (x * math.cos(angle) + y * math.sin(angle) + phase) / period))
    elif kind == "checks":
        pattern = np.sign(np.sin(2 * np.pi * (x + phase) / period) * np.sin(2 * np.pi * (y + phase) / period))
    elif kind == "dots":
        pattern = (np.sin(2 * np.pi * (x + phase) / period) * np.sin(2 * np.pi * (y + phase) / period) > 0.6) * 2.0 - 0.4
    else:  # gradient
        pattern = ((x * math.cos(angle * 4) + y * math.sin(angle * 4)) / IMAGE_SIZE) * 2 - 1
    image = base[None, None, :] + 35.0 * pattern[..., None]
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                angle: float, fill: tuple[int, ...]) -> None:
    def rotated(points):
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + px * c - py * s, cy + px * s + py * c) for px, py in points]

    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, int(r / 3)))
    elif shape == "square":
        draw.polygon(rotated([(-r, -r), (r, -r), (r, r), (-r, r)]), fill=fill)
    elif shape == "triangle":
        draw.polygon(rotated([(0, -r), (r * 0.95, r * 0.8), (-r * 0.95, r * 0.8)]), fill=fill)
    else:  # cross
        w = r / 3
        draw.polygon(rotated([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r),
                              (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]), fill=fill)


def render_sample_image(name: str, rng: np.random.Generator, noise: float) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """One image of the class called ``name`` and the bounding box of its object."""
    shape, colour, background = _class_factors(name)
    image = _background(background, rng, noise)
    draw = ImageDraw.Draw(image)
    # A distractor of another shape and colour, so that "the most salient colour" is not enough.
    other_shape = SHAPES[(SHAPES.index(shape) + int(rng.integers(1, len(SHAPES)))) % len(SHAPES)]
    other_colour = list(COLOURS.values())[int(rng.integers(len(COLOURS)))]
    _draw_shape(draw, other_shape, rng.uniform(8, 56), rng.uniform(8, 56), rng.uniform(4, 8),
                rng.uniform(0, math.pi), _jitter(other_colour, rng, 40))
    # Size, place and angle vary around a centred upright object, more so the larger ``noise``.
    r = 15 + rng.uniform(-5, 5) * min(1.0, noise)
    spread = (IMAGE_SIZE / 2 - r) * min(1.0, noise)
    cx, cy = IMAGE_SIZE / 2 + rng.uniform(-spread, spread), IMAGE_SIZE / 2 + rng.uniform(-spread, spread)
    angle = rng.uniform(-math.pi, math.pi) * noise / 2
    _draw_shape(draw, shape, cx, cy, r, angle, _jitter(COLOURS[colour], rng, 30 * noise))
    if noise > 0:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2 * noise)))
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 18 * noise, (IMAGE_SIZE, IMAGE_SIZE, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    box = tuple(int(np.clip(v, 0, IMAGE_SIZE - 1)) for v in (cx - r, cy - r, cx + r, cy + r))
    return image, box


def generate_sample(out: str | Path, *, seed: int, train_per_class: int, val_per_class: int,
                    test_images: int, grayscale_fraction: float, noise: float) -> Path:
    """Write a Tiny-ImageNet-shaped dataset to the folder ``out``, deterministically from ``seed``."""
    classes = sample_classes(seed)
    rng = np.random.default_rng(seed + 1)
    out = Path(out)
    with atomic_dir(out) as root:
        wnids = [w for w, _ in classes]
        # The official wnids.txt is not sorted; shuffle ours too so nothing relies on its order.
        (root / "wnids.txt").write_text("".join(f"{w}\n" for w in rng.permutation(wnids)))
        # words.txt covers far more ids than the 200 (all of WordNet in the real file).
        extra = [(f"n1{i:07d}", f"unused synset {i}") for i in range(50)]
        (root / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in sorted(classes + extra)))

        def save(image: Image.Image, path: Path) -> None:
            if rng.random() < grayscale_fraction:
                image = image.convert("L")
            image.save(path, "JPEG", quality=int(rng.integers(75, 95)))

        for wnid, name in classes:
            images = root / "train" / wnid / "images"
            images.mkdir(parents=True)
            lines = []
            for i in range(train_per_class):
                image, box = render_sample_image(name, rng, noise)
                save(image, images / f"{wnid}_{i}.JPEG")
                lines.append(f"{wnid}_{i}.JPEG\t" + "\t".join(map(str, box)) + "\n")
            (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(lines))

        (root / "val" / "images").mkdir(parents=True)
        val_labels = [c for c in classes for _ in range(val_per_class)]
        lines = []
        for i, k in enumerate(rng.permutation(len(val_labels))):
            wnid, name = val_labels[k]
            image, box = render_sample_image(name, rng, noise)
            save(image, root / "val" / "images" / f"val_{i}.JPEG")
            lines.append(f"val_{i}.JPEG\t{wnid}\t" + "\t".join(map(str, box)) + "\n")
        (root / "val" / "val_annotations.txt").write_text("".join(lines))

        (root / "test" / "images").mkdir(parents=True)
        for i in range(test_images):
            _, name = classes[int(rng.integers(len(classes)))]
            image, _ = render_sample_image(name, rng, noise)
            save(image, root / "test" / "images" / f"test_{i}.JPEG")
    return out


# --------------------------------------------------------------------------------------
# The real archive
# --------------------------------------------------------------------------------------
def _fetch(url: str, dest_dir: Path, md5: str | None) -> Path:
    """Download ``url`` into ``dest_dir`` (progress bar, md5 check) and return the file."""
    from torchvision.datasets.utils import check_integrity, download_url

    parsed = urllib.parse.urlparse(url)
    filename = Path(urllib.parse.unquote(parsed.path)).name or "archive.zip"
    target = dest_dir / filename
    if parsed.scheme == "file":
        # torchvision's download_url cannot read file:// URLs (no Content-Length), so copy.
        source = Path(urllib.request.url2pathname(parsed.path))
        if not source.is_file():
            raise DatasetError(f"{source}: no such file. Fix tinyimagenet.source in params.yaml "
                               f"(a file:// URL must name an existing archive).")
        shutil.copyfile(source, target)
    elif parsed.scheme in ("http", "https"):
        try:
            download_url(url, str(dest_dir), filename=filename, md5=None)
        except Exception as error:  # network errors come in many types
            raise DatasetError(f"downloading {url} failed: {error}. Check the URL in "
                               f"tinyimagenet.source and your connection, then re-run.") from error
    else:
        raise DatasetError(f"tinyimagenet.source={url!r} is neither 'sample' nor an http(s):// "
                           f"or file:// URL. Fix it in params.yaml.")
    if md5 and not check_integrity(str(target), md5):
        from torchvision.datasets.utils import calculate_md5

        raise DatasetError(f"{url}: md5 {calculate_md5(str(target))} does not match the expected "
                           f"{md5}. The download is corrupt or truncated, or tinyimagenet.md5 is "
                           f"wrong: download again or fix tinyimagenet.md5.")
    return target


def _check_zip(archive: Path, url: str) -> None:
    if not zipfile.is_zipfile(archive):
        raise DatasetError(f"{url}: not a zip archive (or a truncated one). Point "
                           f"tinyimagenet.source at the official {ROOT_NAME}.zip.")
    with zipfile.ZipFile(archive) as zf:
        bad = zf.testzip()
        if bad is not None:
            raise DatasetError(f"{url}: member {bad} is corrupt (CRC mismatch). Download the archive again.")
        for name in zf.namelist():
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise DatasetError(f"{url}: entry {name!r} would be extracted outside the output "
                                   f"folder; refusing this archive. Use the official archive.")


def check_layout(root: Path, source: str | None = None) -> None:
    """Fail unless ``root`` looks like an extracted tiny-imagenet-200 folder."""
    needed = ["wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt"]
    missing = [n for n in needed if not (root / n).exists()]
    if missing:
        raise DatasetError(f"{source or root}: not the Tiny-ImageNet layout, missing {', '.join(missing)}. "
                           f"The archive must hold a top folder {ROOT_NAME}/ with wnids.txt, words.txt, "
                           f"train/, val/images/ and val/val_annotations.txt.")


def download_archive(url: str, out: str | Path, md5: str | None) -> Path:
    """Fetch, verify and extract the archive at ``url``; its tiny-imagenet-200/ becomes ``out``."""
    from torchvision.datasets.utils import extract_archive

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out, "download")  # a killed download's archive
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.download-", dir=out.parent) as scratch:
        with writing(scratch, f"the archive downloaded from {url}"):
            archive = _fetch(url, Path(scratch), md5)
        _check_zip(archive, url)
        with zipfile.ZipFile(archive) as listing:
            unpacked = sum(info.file_size for info in listing.infolist())
        ensure_space(out.parent, unpacked, f"extracting {archive.name} ({unpacked / 1e6:,.0f} MB unpacked)")
        with atomic_dir(out) as tmp:
            extracted = Path(scratch) / "extracted"
            extract_archive(str(archive), str(extracted))
            root = extracted / ROOT_NAME
            if not root.is_dir():
                tops = sorted(p.name for p in extracted.iterdir())
                raise DatasetError(f"{url}: the archive has no top folder {ROOT_NAME}/ (it has "
                                   f"{', '.join(tops[:5]) or 'nothing'}). Use the official archive.")
            check_layout(root, url)
            tmp.rmdir()
            shutil.move(str(root), str(tmp))
    return out


def prepare_source(cfg: TinyImageNetParams, out: str | Path) -> Path:
    """The download_tinyimagenet stage: source ``sample`` generates, a URL downloads."""
    if cfg.source == "sample":
        return generate_sample(out, **asdict(cfg.sample))
    return download_archive(cfg.source, out, cfg.md5)


# --------------------------------------------------------------------------------------
# relabel_val: tables and decoded images
# --------------------------------------------------------------------------------------
def _read_tsv(path: Path, names: list[str], what: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False,
                            quoting=3, on_bad_lines="error")
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing. {what}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"{path}: cannot be parsed ({error}). {what}") from None
    if table.shape[1] != len(names):
        raise DatasetError(f"{path}: expected {len(names)} tab-separated columns "
                           f"({', '.join(names)}), found {table.shape[1]}. {what}")
    table.columns = names
    return table


def _boxes(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    for col in ("x0", "y0", "x1", "y1"):
        values = pd.to_numeric(table[col], errors="coerce")
        if values.isna().any():
            row = int(values.isna().idxmax()) + 1
            raise DatasetError(f"{path}, line {row}: box coordinate {col} is not a number. "
                               f"Fix or restore this file from the official archive.")
        table[col] = values.astype(np.int16)
    return table


def read_classes(root: Path) -> pd.DataFrame:
    """Class index (sorted wnids, as torchvision's ImageFolder assigns), wnid and name."""
    wnids_path = root / "wnids.txt"
    if not wnids_path.is_file():
        raise DatasetError(f"{wnids_path}: missing. Restore it from the official archive.")
    wnids = [line.strip() for line in wnids_path.read_text().splitlines() if line.strip()]
    duplicates = sorted({w for w in wnids if wnids.count(w) > 1})
    if duplicates:
        raise DatasetError(f"{wnids_path}: lists {', '.join(duplicates[:5])} more than once. "
                           f"Each class id must appear once; restore the file from the official archive.")
    train_dirs = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    unlisted = sorted(set(train_dirs) - set(wnids))
    if unlisted:
        raise DatasetError(f"{wnids_path}: lists {len(wnids)} classes but train/ has {len(unlisted)} "
                           f"more ({', '.join(unlisted[:5])}{', ...' if len(unlisted) > 5 else ''}). "
                           f"Copies with a truncated wnids.txt circulate: restore the full file "
                           f"from the official archive.")
    without_images = sorted(set(wnids) - set(train_dirs))
    if without_images:
        raise DatasetError(f"{root / 'train'}: no folder for {', '.join(without_images[:5])}, "
                           f"which {wnids_path} lists. Re-extract the archive.")
    words = _read_tsv(root / "words.txt", ["wnid", "name"], "Restore words.txt from the official archive.")
    names = dict(zip(words.wnid, words.name))
    missing_names = [w for w in wnids if w not in names]
    if missing_names:
        raise DatasetError(f"{root / 'words.txt'}: has no name for {', '.join(missing_names[:5])}. "
                           f"Restore words.txt from the official archive.")
    ordered = sorted(wnids)
    return pd.DataFrame({"class_index": range(len(ordered)), "wnid": ordered,
                         "name": [names[w] for w in ordered]})


def _check_duplicates(table: pd.DataFrame, path: Path) -> None:
    dup = table[table.duplicated("file", keep=False)]
    if len(dup):
        raise DatasetError(f"{path}: {dup.file.iloc[0]} is listed {int((table.file == dup.file.iloc[0]).sum())} "
                           f"times ({dup.file.nunique()} files listed more than once). Each image must "
                           f"appear once: remove the duplicate rows or restore the file.")


def read_train(root: Path, classes: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for wnid in classes.wnid:
        folder = root / "train" / wnid
        boxes_path = folder / f"{wnid}_boxes.txt"
        images = sorted(p.name for p in (folder / "images").glob("*.JPEG"))
        if boxes_path.exists():
            boxes = _boxes(_read_tsv(boxes_path, ["file", "x0", "y0", "x1", "y1"],
                                     "Restore it from the official archive."), boxes_path)
            _check_duplicates(boxes, boxes_path)
            missing = sorted(set(boxes.file) - set(images))
            if missing:
                raise DatasetError(f"{folder / 'images' / missing[0]}: listed in {boxes_path} but missing "
                                   f"({len(missing)} such). Re-extract the archive.")
            unboxed = sorted(set(images) - set(boxes.file))
            boxes = pd.concat([boxes, pd.DataFrame({"file": unboxed})], ignore_index=True)
        else:
            if not images:
                raise DatasetError(f"{folder}: no images and no {boxes_path.name}. Re-extract the archive.")
            boxes = pd.DataFrame({"file": images})
        boxes["path"] = [f"train/{wnid}/images/{f}" for f in boxes.file]
        boxes["wnid"] = wnid
        rows.append(boxes)
    return pd.concat(rows, ignore_index=True)


def read_val(root: Path, classes: pd.DataFrame) -> pd.DataFrame:
    path = root / "val" / "val_annotations.txt"
    table = _boxes(_read_tsv(path, ["file", "wnid", "x0", "y0", "x1", "y1"],
                             "Restore it from the official archive."), path)
    _check_duplicates(table, path)
    unknown = table[~table.wnid.isin(set(classes.wnid))]
    if len(unknown):
        row = unknown.iloc[0]
        raise DatasetError(f"{path}: {row.file} is labelled {row.wnid}, which wnids.txt does not list "
                           f"({len(unknown)} such rows). Fix the annotation or restore wnids.txt.")
    images_dir = root / "val" / "images"
    missing = [f for f in table.file if not (images_dir / f).is_file()]
    if missing:
        raise DatasetError(f"{images_dir / missing[0]}: listed in {path} but missing "
                           f"({len(missing)} such). Re-extract the archive.")
    table["path"] = [f"val/images/{f}" for f in table.file]
    return table


def decode_images(root: Path, paths: list[str], size: int = IMAGE_SIZE, what: str = "decoding images") -> np.ndarray:
    """Decode every image once into an (N, 3, size, size) uint8 array, converting to RGB."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, rel in progress(enumerate(paths), what, "images", total=len(paths)):
        path = root / rel
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")  # grayscale (L) and CMYK images occur in the real set
                if image.size != (size, size):
                    image = image.resize((size, size), Image.BILINEAR)
                out[i] = np.asarray(image).transpose(2, 0, 1)
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetError(f"{path}: unreadable image ({error}). Replace it with the file from "
                               f"the official archive, or delete it and its annotation row.") from None
    return out


COLUMNS = ["path", "wnid", "class_index", "name", "x0", "y0", "x1", "y1"]


def relabel(root: str | Path, out: str | Path) -> dict:
    """The relabel_val stage: write classes.csv, train.csv, val.csv and decoded images to ``out``.

    Returns a small summary (counts) for the metrics file.
    """
    root = Path(root)
    check_layout(root)
    classes = read_classes(root)
    index = dict(zip(classes.wnid, classes.class_index))
    names = dict(zip(classes.wnid, classes.name))
    summary = {"classes": len(classes)}
    tables = {"train": read_train(root, classes), "val": read_val(root, classes)}
    # The decoded arrays are written beside the previous ones, which go only once they are complete.
    images = sum(len(table) for table in tables.values())
    ensure_space(Path(out).parent, images * 3 * IMAGE_SIZE * IMAGE_SIZE,
                 f"decoding {images:,} images ({IMAGE_SIZE}x{IMAGE_SIZE} RGB, uint8)")
    with atomic_dir(out) as tmp:
        classes.to_csv(tmp / "classes.csv", index=False)
        for split, table in tables.items():
            table["class_index"] = table.wnid.map(index).astype(np.int16)
            table["name"] = table.wnid.map(names)
            table = table.reindex(columns=COLUMNS)
            images = decode_images(root, list(table.path), what=f"decoding {split} images")
            table.to_csv(tmp / f"{split}.csv", index=False)
            np.save(tmp / f"{split}_images.npy", images)
            summary[f"{split}_images"] = len(table)
        write_json(tmp / "summary.json", summary)
    return summary


def load_split(prepared: str | Path, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The table and decoded images of ``split`` written by ``relabel`` (images memory-mapped)."""
    prepared = Path(prepared)
    table = pd.read_csv(prepared / f"{split}.csv", keep_default_na=False)
    images = np.load(prepared / f"{split}_images.npy", mmap_mode="r")
    return table, images


def load_split_tensors(prepared: str | Path, split: str) -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor]:
    """The table of ``split``, its decoded uint8 images (read into memory once) and class indices."""
    import torch  # here, like torchvision above: the data stages do not need it

    table, images = load_split(prepared, split)
    return (table, torch.from_numpy(np.array(images)),
            torch.from_numpy(np.array(table.class_index, dtype=np.int64)))  # copies: pandas' arrays are read-only


def load_classes(prepared: str | Path) -> pd.DataFrame:
    """class_index, wnid, name of every class, as ``relabel`` wrote them."""
    return pd.read_csv(Path(prepared) / "classes.csv", keep_default_na=False)
