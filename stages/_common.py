"""Shared by the stage entry points: make the package importable, and turn known errors, faults
(a full disk, an unwritable folder) and stop signals into one clear line instead of a traceback:
exit status 1 for an error, 130 for SIGINT (Ctrl-C), 143 for SIGTERM."""
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dlreport.errors import PipelineError  # noqa: E402
from dlreport.faults import Fault, Stopped, disk_error, handle_stop_signals, restore_signals, stage_name  # noqa: E402

# Imported before the stage imports torch: a signal during those seconds ends it with one line.
# (The handlers before are put back when run_stage returns, for a caller that runs a stage in-process.)
BEFORE = handle_stop_signals(started=False)


def run_stage(main) -> None:
    handle_stop_signals(started=True)
    try:
        main()
    except KeyboardInterrupt:  # (SIGINT raises Stopped; this is a Ctrl-C sent some other way)
        stop(Stopped(signal.SIGINT))
    except Stopped as stopped:
        stop(stopped)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        stage = os.environ.get("DVC_STAGE")  # set by dvc repro / dvc exp run
        if stage and not isinstance(error, Fault):
            # DVC clears a stage's (non-persistent) outputs from the workspace before running it;
            # the last good ones stay in its cache (metrics files: in git) until dvc.lock names new ones.
            print(f"note: DVC clears a stage's outputs before running it; the last good ones of {stage} come "
                  f"back with `dvc checkout {stage}` (and `git checkout metrics` for the metrics files git "
                  f"keeps).", file=sys.stderr)
        sys.exit(1)
    except (OSError, RuntimeError) as error:  # a write the library did not wrap (torch's RuntimeError wraps one)
        fault = disk_error(error)
        if fault is None:
            raise
        print(f"error: {fault}", file=sys.stderr)
        sys.exit(1)
    finally:
        restore_signals(BEFORE)


def stop(stopped: Stopped) -> None:
    # One line for the stage: a torchrun launch's rank-0 worker says it; the other ranks do not.
    if not stopped.said and int(os.environ.get("RANK", "0")) == 0:
        print(stopped.line(stage_name()), file=sys.stderr, flush=True)
    sys.exit(stopped.exit_status)
