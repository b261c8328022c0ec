"""Files as the pipeline reads and writes them: YAML as DVC reads it, and atomic writes (an output
appears complete or not at all; a full disk or an unwritable folder is a DiskError naming the output
(``faults.writing``), its temporary removed)."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from dlreport.faults import writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_leftovers(final: str | os.PathLike, tag: str = "tmp") -> list[Path]:
    """Remove the hidden ``.<name>.<tag>-*`` siblings of ``final`` that an earlier run of the same
    stage left when it was killed (kill -9 or power loss skip every cleanup); on real data each
    can hold gigabytes. Only this output's own temporaries match the pattern."""
    final = Path(final)
    found = sorted(final.parent.glob(f".{glob.escape(final.name)}.{tag}-*")) if final.parent.is_dir() else []
    for leftover in found:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return found


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``final`` only if the block succeeds.

    On any exception the temporary folder is removed and ``final`` is left as it was
    (or absent), so a failed stage never leaves a half-written output behind; what a killed
    run left is removed by the next one.
    """
    final = Path(final)
    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        aside = None
        try:
            yield tmp
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output should not be
            if final.exists() or final.is_symlink():
                # A folder cannot be renamed over a folder: the old one goes aside first, and comes
                # back if the new one cannot take its place (a stop signal between the two renames).
                aside = final.with_name(f".{final.name}.tmp-old")
                os.replace(final, aside)
            os.replace(tmp, final)
        except BaseException:
            if aside is not None and not final.exists():
                os.replace(aside, final)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if aside is not None:
            shutil.rmtree(aside) if aside.is_dir() and not aside.is_symlink() else aside.unlink()


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of ``final`` for writing; rename it into place on success."""
    final = Path(final)
    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(final)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
        os.close(fd)
        try:
            with open(tmp, mode) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the output should not be
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def read_yaml(text: str) -> Any:
    """YAML as DVC reads params.yaml and dvc.lock: ruamel.yaml's safe loader, YAML 1.2 - the call
    DVC's own reader makes (dvc.utils.serialize.parse_yaml). So `yes`, `on`, `off` and `1:30` are
    strings, `010` is 10 and `1e-4` a number, as in dvc.lock, where PyYAML (YAML 1.1) would read
    true, true, false, 90, 8 and the string "1e-4". An empty file is an empty mapping, as for DVC."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text) or {}
