"""Shared by the stage entry points: make the package importable and turn known errors into
one clear line and exit status 1 instead of a traceback."""
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
        sys.exit(1)
