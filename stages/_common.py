"""Shared by the stage entry points: make the package importable and turn known errors into
one clear line and exit status 1 instead of a traceback."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dlreport.errors import PipelineError  # noqa: E402


def run_stage(main) -> None:
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        stage = os.environ.get("DVC_STAGE")  # set by dvc repro / dvc exp run
        if stage:
            # DVC clears a stage's (non-persistent) outputs from the workspace before running it;
            # the last good ones stay in its cache (metrics files: in git) until dvc.lock names new ones.
            print(f"note: DVC clears a stage's outputs before running it; the last good ones of {stage} come "
                  f"back with `dvc checkout {stage}` (and `git checkout metrics` for the metrics files git "
                  f"keeps).", file=sys.stderr)
        sys.exit(1)
