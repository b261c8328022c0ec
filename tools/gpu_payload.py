"""The real Tiny-ImageNet archive, carried to a lent GPU machine in parts that fit its calls.

A call of the device tool carries at most 64 MiB - the working tree included - and nothing outside
the checkout travels, so the 242 MB archive goes in byte-parts over consecutive calls while the machine is
warm, each part checked (md5) on the call that brings it, then joined and checked whole against the
archive's md5 - the one params.yaml's tinyimagenet.md5 takes - before the pipeline's own data stages
(download_tinyimagenet with a file:// source, relabel_val) extract and decode it there. The JPEGs
are the smallest form of the data: the decoded arrays relabel_val writes (1.35 GB) compress
losslessly to 1.0-1.2 GB (docs/gpu-check.md), four to five times the archive.

Here (the parts go to .gpu_payload/, which git ignores; the reference digests of the decoded arrays
come from relabel_val's code run here, so the GPU run can say whether it decoded the same pixels):

    python tools/gpu_payload.py build --archive /path/to/tiny-imagenet-200.zip \\
        --md5 5cac8f5f2794de738ffdaaeb12735df9
    python tools/gpu_payload.py plan         # the device calls, re-checked against today's tree

On the GPU machine (stdlib only; the parts stay in the tree's ignored .gpu_payload/ between calls):

    python3 tools/gpu_payload.py receive 2   # part 2 arrived whole; lists the parts held so far
    python3 tools/gpu_payload.py assemble    # all parts -> .gpu_payload/tiny-imagenet-200.zip, md5-checked
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ".gpu_payload"                  # in .gitignore: never committed, carried by name
MANIFEST = "manifest.json"
CALL_LIMIT = 64 * 2**20                  # what one device call may carry, the working tree included
MARGIN = 2**20                           # the manifest (a few kB), and room for the tree to grow a little
BLOCK = 1 << 22


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_bytes(root: Path = ROOT) -> int:
    """What every device call carries besides the parts: the files git tracks and the untracked
    ones it does not ignore (ignored paths travel only when a call names them in `carry`)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.split(b"\0")
    total = 0
    for name in filter(None, listed):
        path = root / os.fsdecode(name)
        if path.is_symlink() or path.is_file():  # (a tracked file deleted here does not travel)
            total += path.lstat().st_size
    return total


def array_digest(path: Path) -> dict:
    """Shape, dtype and md5 of an .npy array's data (not of the file, whose header numpy may
    write differently between versions): equal digests are the same pixels."""
    import numpy as np

    array = np.load(path, mmap_mode="r")
    digest = hashlib.md5()
    flat = array.reshape(-1)
    step = max(1, BLOCK // max(1, array.itemsize))
    for start in range(0, flat.size, step):
        digest.update(np.ascontiguousarray(flat[start:start + step]).tobytes())
    return {"shape": list(array.shape), "dtype": str(array.dtype), "md5": digest.hexdigest()}


def reference_digests(archive: Path, prepared: Path | None) -> dict:
    """The decoded arrays' digests as relabel_val writes them here (from ``prepared``, or decoded
    now from ``archive`` in a temporary folder), with the decoder's version."""
    import PIL

    with tempfile.TemporaryDirectory(prefix="gpu_payload-") as scratch:
        if prepared is None:
            sys.path.insert(0, str(ROOT))
            from dlreport.tinyimagenet import download_archive, relabel

            root = download_archive(Path(archive).resolve().as_uri(), Path(scratch) / "tiny-imagenet-200", None)
            prepared = Path(scratch) / "prepared"
            relabel(root, prepared)
        return {**{split: array_digest(Path(prepared) / f"{split}_images.npy") for split in ("train", "val")},
                "pillow": PIL.__version__}


def read_manifest(folder: str | Path = ROOT / FOLDER) -> dict:
    path = Path(folder)
    return json.loads((path / MANIFEST if path.is_dir() else path).read_text())


# --------------------------------------------------------------------------------------
# Here: the parts and the plan
# --------------------------------------------------------------------------------------
def build(archive: Path, out: Path, md5: str | None, parts: int | None, reference: str) -> dict:
    tic = time.monotonic()
    size, digest = archive.stat().st_size, md5_of(archive)
    if md5 and digest != md5:
        raise SystemExit(f"error: {archive}: md5 {digest}, not the expected {md5}")
    tree = tree_bytes()
    room = CALL_LIMIT - tree - MARGIN
    if room <= 0:
        raise SystemExit(f"error: the working tree alone carries {tree / 2**20:.1f} MiB; nothing fits beside it")
    count = parts or math.ceil(size / room)
    part_size = math.ceil(size / count)
    if part_size > room:
        raise SystemExit(f"error: {count} parts of {part_size / 2**20:.1f} MiB do not fit beside the "
                         f"{tree / 2**20:.1f} MiB tree in a {CALL_LIMIT / 2**20:.0f} MiB call")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    records = []
    with open(archive, "rb") as source:
        for k in range(1, count + 1):
            name = f"{archive.name}.part{k}of{count}"
            digest_k, written = hashlib.md5(), 0
            with open(out / name, "wb") as target:
                while written < part_size and (block := source.read(min(BLOCK, part_size - written))):
                    target.write(block)
                    digest_k.update(block)
                    written += len(block)
            records.append({"name": name, "bytes": written, "md5": digest_k.hexdigest()})
    split_s = time.monotonic() - tic
    manifest = {"archive": archive.name, "bytes": size, "md5": digest, "parts": records,
                "tree_bytes_when_built": tree, "call_limit_bytes": CALL_LIMIT, "split_seconds": round(split_s, 1)}
    if reference != "none":
        tic = time.monotonic()
        manifest["reference"] = reference_digests(archive, None if reference == "decode" else Path(reference))
        manifest["reference_seconds"] = round(time.monotonic() - tic, 1)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# The device calls, in order. Calls 1-3 only bring a part (call 1 also records the machine's
# facts: gpu_check's environment step, which fails early if the image cannot run the check); the
# last brings the last part, joins them, and runs the report's recipe within --budget seconds.
FIRST = "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --only environment --out $OUT/environment.json"
LAST = ("set -o pipefail; {receive} && python3 tools/gpu_payload.py assemble && PYTHONUNBUFFERED=1 python3 "
        "benchmarks/gpu_check.py --archive .gpu_payload/{archive} --manifest .gpu_payload/manifest.json "
        "--only real_data,recipe_224 --budget {budget} --results $OUT --out $OUT/gpu_check.json 2>&1 "
        "| tee $OUT/gpu_check.log")
BUDGET_S = 570           # the last call's gpu_check --budget; the call's timeout_s is 600, the most allowed


def calls(manifest: dict, budget: int = BUDGET_S) -> list[dict]:
    out = []
    count = len(manifest["parts"])
    for k, part in enumerate(manifest["parts"], 1):
        receive = f"python3 tools/gpu_payload.py receive {k}"
        if k == count:
            command, timeout = LAST.format(receive=receive, archive=manifest["archive"], budget=budget), budget + 30
        else:
            command, timeout = (f"{receive} && {FIRST}" if k == 1 else receive), 120 if k == 1 else 60
        out.append({"command": command, "carry": [f"{FOLDER}/{MANIFEST}", f"{FOLDER}/{part['name']}"],
                    "timeout_s": timeout})
    return out


def plan(folder: Path, budget: int) -> None:
    manifest = read_manifest(folder)
    tree = tree_bytes()
    manifest_bytes = (folder / MANIFEST).stat().st_size
    for k, (call, part) in enumerate(zip(calls(manifest, budget), manifest["parts"]), 1):
        carried = tree + manifest_bytes + part["bytes"]
        fits = "fits" if carried <= CALL_LIMIT else "DOES NOT FIT: rebuild (more parts)"
        print(f"# call {k}: {carried / 2**20:.1f} MiB of {CALL_LIMIT / 2**20:.0f} ({fits})")
        print(json.dumps(call))
        if not (folder / part["name"]).is_file():
            print(f"# missing here: {folder / part['name']}")


# --------------------------------------------------------------------------------------
# There: check each part as it arrives, then join them
# --------------------------------------------------------------------------------------
def held(folder: Path, manifest: dict) -> list[int]:
    """The parts present here whole (size; the md5 was checked when each arrived)."""
    return [k for k, p in enumerate(manifest["parts"], 1)
            if (folder / p["name"]).is_file() and (folder / p["name"]).stat().st_size == p["bytes"]]


def receive(folder: Path, k: int) -> None:
    manifest = read_manifest(folder)
    part = manifest["parts"][k - 1]
    path = folder / part["name"]
    if not path.is_file():
        raise SystemExit(f"error: {path} did not arrive (name it in the call's carry)")
    digest = md5_of(path)
    if digest != part["md5"]:
        path.unlink()
        raise SystemExit(f"error: {path}: md5 {digest}, not {part['md5']}: removed; send part {k} again")
    have = held(folder, manifest)
    missing = [k for k in range(1, len(manifest["parts"]) + 1) if k not in have]
    print(f"part {k} of {len(manifest['parts'])} whole ({part['bytes']:,} bytes, md5 {digest}); held: "
          f"{', '.join(map(str, have))}" + (f"; still to send: {', '.join(map(str, missing))}" if missing else ""))


def assemble(folder: Path, out: Path | None) -> Path:
    manifest = read_manifest(folder)
    out = out or folder / manifest["archive"]
    count = len(manifest["parts"])
    missing = [k for k in range(1, count + 1) if k not in held(folder, manifest)]
    if missing:
        raise SystemExit(f"error: part(s) {', '.join(map(str, missing))} of {count} are not here (a machine given "
                         f"back between calls starts bare): send them again")
    tic = time.monotonic()
    digest = hashlib.md5()
    with open(out, "wb") as target:
        for part in manifest["parts"]:
            with open(folder / part["name"], "rb") as source:
                for block in iter(lambda: source.read(BLOCK), b""):
                    target.write(block)
                    digest.update(block)
    if digest.hexdigest() != manifest["md5"] or out.stat().st_size != manifest["bytes"]:
        out.unlink()
        raise SystemExit(f"error: the joined parts' md5 is {digest.hexdigest()}, not {manifest['md5']}")
    print(f"{out}: {manifest['bytes']:,} bytes, md5 {manifest['md5']} (as built), joined from {count} parts in "
          f"{time.monotonic() - tic:.1f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=ROOT / FOLDER, help="the parts' folder (default .gpu_payload)")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="split the archive into parts and write the manifest")
    b.add_argument("--archive", type=Path, required=True)
    b.add_argument("--md5", help="the archive's expected md5 (checked before anything is written)")
    b.add_argument("--parts", type=int, help="how many parts (default: as few as fit beside the tree)")
    b.add_argument("--reference", default="decode",
                   help="digests of the decoded arrays: decode (relabel_val's code, here; default), "
                        "a prepared folder to read them from, or none")
    p = commands.add_parser("plan", help="print the device calls, checked against today's tree")
    p.add_argument("--budget", type=int, default=BUDGET_S, help="the last call's gpu_check --budget (seconds)")
    r = commands.add_parser("receive", help="on the machine: check that part K arrived whole")
    r.add_argument("part", type=int)
    a = commands.add_parser("assemble", help="on the machine: join the parts and check the archive's md5")
    a.add_argument("--out", type=Path, help="default: the archive's name in the parts' folder")
    args = parser.parse_args(argv)
    if args.command == "build":
        manifest = build(args.archive, args.dir, args.md5, args.parts, args.reference)
        print(f"{args.dir}: {len(manifest['parts'])} parts of {args.archive} ({manifest['bytes']:,} bytes, md5 "
              f"{manifest['md5']}) in {manifest['split_seconds']} s" + (
                  f"; decoded-array digests in {manifest['reference_seconds']} s" if "reference" in manifest else ""))
        plan(args.dir, BUDGET_S)
    elif args.command == "plan":
        plan(args.dir, args.budget)
    elif args.command == "receive":
        receive(args.dir, args.part)
    else:
        assemble(args.dir, args.out)


if __name__ == "__main__":
    main()
