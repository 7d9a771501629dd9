"""bench/data_parallel.py runs end to end on tiny sizes (its figures are in docs/results.md)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "data_parallel.py"


def test_data_parallel_bench_runs():
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "PYTHONPATH",
                                                                            "INBOXRL_CACHE", "TMPDIR")}
    proc = subprocess.run([sys.executable, str(BENCH), "--model", "tiny", "--steps", "2", "--rounds", "1",
                           "--groups", "2", "--group-size", "2", "--max-turns", "1", "--max-tokens", "4", "--fsdp"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "1 timed steps per side" in out
    assert re.search(r"^1 process x 2 threads +\d+\.\d{4} ", out, re.M)
    assert re.search(r"^2 processes x 1 thread\(s\) +\d+\.\d{4} ", out, re.M)
    assert re.search(r"^1 process x 1 thread\(s\) +\d+\.\d{4} ", out, re.M)
    assert re.search(r"^2 processes x 1 thread\(s\) FSDP +\d+\.\d{4} ", out, re.M)
    assert re.search(r"ratio \(FSDP / DDP, 2 processes, steps/s\): \d+\.\d\dx \(update \d+\.\d\dx", out)
    assert re.search(r"ratio \(2 processes / 1 process, steps/s\): \d+\.\d\dx", out)
    assert re.search(r"ratio \(2 processes x 1 / 1 process x 1 thread\(s\), steps/s\): \d+\.\d\dx", out)
    assert re.search(r"gradient all-reduce \d+\.\d ms = \d+\.\d\d% of the 2-process step", out)
