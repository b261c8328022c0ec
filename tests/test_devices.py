"""dlreport.devices: what a CPU training process sets up before its first step - the threads it
may use, and the allocator keeping freed memory for the next step. Each runs in a fresh process
(both change process-wide state), on the real C library and scheduler."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, env


def in_fresh_process(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n{code}"],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_cpu_process_uses_the_cores_it_may_run_on():
    """taskset to one core: torch gets one thread (not one per host core, which would spin)."""
    out = in_fresh_process(
        "import json, os, torch\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from dlreport.devices import init_distributed, usable_cores\n"
        "init_distributed(use_cuda=False)\n"
        "print(json.dumps({'cores': usable_cores(), 'threads': torch.get_num_threads()}))")
    assert out == {"cores": 1, "threads": 1}


def test_freed_memory_is_reused_without_page_faults():
    """A 64 MB tensor made and freed five times: without keep_freed_memory every one is a fresh
    mapping whose pages fault in (16,384 faults each); with it, once the heap has grown to hold
    it (a few rounds), the block freed is the next one's."""
    out = in_fresh_process(
        "import json, resource, torch\n"
        "from dlreport.devices import keep_freed_memory\n"
        "def faults():\n"
        "    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(5):\n"
        "        block = torch.ones(16 << 20)\n"
        "        del block\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start\n"
        "before = faults()\n"
        "applied = keep_freed_memory()\n"
        "faults(), faults()  # the first rounds (7 here) grow the heap to hold the block\n"
        "print(json.dumps({'applied': applied, 'before': before, 'after': faults()}))")
    pages = 5 * (64 << 20) // 4096
    assert out["applied"] and out["before"] >= 0.9 * pages, out
    assert out["after"] < 0.02 * pages, out
