"""The locked environment: requirements.txt and requirements-dev.txt match their inputs
(requirements.in, requirements-dev.in) as tools/lock.sh compiles them, every package the code
imports is declared, and under CI the environment holds exactly the locked versions.

Checked offline, by reading the files: a dependency added to an .in file and not locked, a range
changed so the pin falls outside it, a dependency removed but still locked, or a lock edited by
hand fails here."""
from __future__ import annotations

import ast
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO

RUNTIME_IN, DEV_IN = REPO / "requirements.in", REPO / "requirements-dev.in"
RUNTIME_LOCK, DEV_LOCK = REPO / "requirements.txt", REPO / "requirements-dev.txt"


def direct(path: Path) -> dict[str, Requirement]:
    """The requirements an .in file names itself (not its -r / -c includes)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            out[canonicalize_name(requirement.name)] = requirement
    return out


def locked(path: Path) -> dict[str, dict]:
    """name -> {version, hashes, via} for every package of a pip-compile lock."""
    out: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==(\S+) \\$", line)
        if pin:
            current = out.setdefault(canonicalize_name(pin[1]), {"version": Version(pin[2]), "hashes": 0, "via": []})
        elif line.startswith("    --hash=sha256:") and current is not None:
            current["hashes"] += 1
        elif re.match(r"^\s+# (via )?", line) and current is not None:
            current["via"].append(re.sub(r"^\s+# (via )?", "", line).strip())
        elif line and not line.startswith("#") and not line.startswith("    "):
            raise AssertionError(f"{path.name}: a line that is not a hashed pin: {line!r}")
    return out


def test_every_line_of_the_locks_is_a_hashed_pin_compiled_from_its_input():
    for lock, source in ((RUNTIME_LOCK, RUNTIME_IN), (DEV_LOCK, DEV_IN)):
        lines = lock.read_text().splitlines()
        header = lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))]
        command = [line for line in header if line.startswith("#    pip-compile ")]
        assert command and command[0].endswith(f" {source.name}") and "--generate-hashes" in command[0], \
            f"{lock.name} was not compiled from {source.name} by tools/lock.sh's pip-compile (run: bash tools/lock.sh)"
        pins = locked(lock)
        assert pins, lock.name
        unhashed = [name for name, pin in pins.items() if not pin["hashes"]]
        assert not unhashed, f"{lock.name}: pins without hashes: {unhashed} (run: bash tools/lock.sh)"


@pytest.mark.parametrize("source, lock", [(RUNTIME_IN, RUNTIME_LOCK), (DEV_IN, DEV_LOCK)], ids=["runtime", "dev"])
def test_each_direct_dependency_is_pinned_within_its_range(source, lock):
    wanted = direct(RUNTIME_IN) | direct(source)
    pins = locked(lock)
    problems = []
    for name, requirement in wanted.items():
        if name not in pins:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(pins[name]["version"], prereleases=True):
            problems.append(f"{lock.name} pins {name}=={pins[name]['version']}, outside {requirement}")
    assert not problems, "; ".join(problems) + " - re-lock with: bash tools/lock.sh"


@pytest.mark.parametrize("source, lock", [(RUNTIME_IN, RUNTIME_LOCK), (DEV_IN, DEV_LOCK)], ids=["runtime", "dev"])
def test_the_lock_holds_nothing_its_input_does_not_ask_for(source, lock):
    """A dependency removed from the .in file leaves the lock's direct pins (`via -r <file>`) too."""
    wanted = set(direct(RUNTIME_IN) | direct(source))
    named = {name for name, pin in locked(lock).items() if any(v.startswith("-r ") for v in pin["via"])}
    assert named == wanted, f"{lock.name} pins as direct {sorted(named - wanted)} that no input names, " \
                            f"and lacks {sorted(wanted - named)} - re-lock with: bash tools/lock.sh"


def test_the_dev_lock_has_the_pipelines_versions():
    runtime, dev = locked(RUNTIME_LOCK), locked(DEV_LOCK)
    differ = {name: (pin["version"], dev.get(name, {}).get("version")) for name, pin in runtime.items()
              if dev.get(name, {}).get("version") != pin["version"]}
    assert not differ, f"requirements-dev.txt differs from requirements.txt: {differ}"
    assert set(direct(DEV_IN)) <= set(dev)


def imported(folder: str) -> set[str]:
    """Top-level modules the Python files below ``folder`` import (not the standard library's)."""
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names}


OWN = {"dlreport", "tools", "conftest", "_common", "bench_resnet_input"}  # the project's own modules


@pytest.mark.parametrize("folders, source", [(("dlreport", "stages", "benchmarks", "tools"), RUNTIME_IN),
                                             (("tests",), DEV_IN)], ids=["pipeline", "tests"])
def test_every_imported_package_is_declared(folders, source):
    declared = set(direct(RUNTIME_IN) | direct(source))
    distributions = packages_distributions()
    undeclared = {}
    for folder in folders:
        for module in imported(folder) - OWN:
            names = {canonicalize_name(d) for d in distributions.get(module, [module])}
            if not names & declared:
                undeclared[module] = sorted(names)
    assert not undeclared, f"imported but not declared in {source.name}: {undeclared}"


def test_the_environment_holds_the_locked_versions():
    """.ci/run installs requirements-dev.txt into a fresh environment: there every locked version
    is installed. (Elsewhere, e.g. a shared development environment, a difference is reported.)"""
    expected = locked(DEV_LOCK)
    differ = {}
    for name, pin in expected.items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            installed = None
        if installed != pin["version"]:
            differ[name] = f"{installed} (locked {pin['version']})"
    if differ and os.environ.get("CI") != "true":
        pytest.skip(f"not an environment built from requirements-dev.txt: {differ}")
    assert not differ, f"installed versions differ from requirements-dev.txt: {differ}"
