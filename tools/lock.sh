#!/usr/bin/env bash
# The locks, compiled from their inputs by pip-tools' pip-compile (with every file's hash):
#   requirements.in     -> requirements.txt      the pipeline (README command 1)
#   requirements-dev.in -> requirements-dev.txt  the pipeline and the tests, the same versions (command 2, CI)
#
#   bash tools/lock.sh             after editing an .in file: pins what the edit needs, keeps the rest
#   bash tools/lock.sh --upgrade   every package to the newest version its range allows
#   bash tools/lock.sh --upgrade-package dvc   one package (and what it needs)
#
# pip-compile resolves with pip's own configuration (its index and find-links), so torch comes from
# wherever pip takes it on this machine. It runs from a throwaway virtual environment, or from
# $LOCK_PIP_COMPILE (a name outside PIP_*, which pip reads as its own options).
# tests/test_requirements.py checks that the locks match their inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
compile="${LOCK_PIP_COMPILE:-}"
if [ -z "$compile" ]; then
    tools="$(mktemp -d)"
    trap 'rm -rf "$tools"' EXIT
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q "pip-tools~=7.6"
    compile="$tools/bin/pip-compile"
fi
# no index or find-links lines: the locks name packages and hashes, not this machine's paths
flags=(--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --quiet)
"$compile" "${flags[@]}" "$@" --output-file=requirements.txt requirements.in
"$compile" "${flags[@]}" "$@" --output-file=requirements-dev.txt requirements-dev.in
