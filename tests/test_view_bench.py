"""The viewer's bench scripts run end to end on tiny sizes (their figures are in docs/results.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np

from _view_util import chromium

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_view_scale_bench_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "view_scale.py"), "--steps", "3", "--groups", "2",
                           "--group-size", "2", "--distinct", "2", "--eval-size", "2", "--keep", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fabricated 3 steps x 4 rollouts" in proc.stdout
    assert "cold build:" in proc.stdout and "(3 step pages, 14 rollouts" in proc.stdout
    assert "refresh after one more step" in proc.stdout and "(8 rollouts built)" in proc.stdout
    assert (tmp_path / "run" / "view" / "steps" / "step_0004.html").is_file()


def test_view_screenshot_script(tmp_path):
    chromium()  # skips, saying why, when there is no browser
    out = tmp_path / "step.png"
    proc = subprocess.run([sys.executable, str(BENCH / "view_screenshot.py"), "--out", str(out), "--size", "800,600"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pixels = matplotlib.image.imread(out)[..., :3]
    assert pixels.shape[:2] == (600, 800) and float(np.std(pixels)) > 0.05
