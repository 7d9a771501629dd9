"""Behaviour preservation: a fixed-seed tiny run gives the recorded outputs.

``tests/_golden_run.py`` runs ``inboxrl train`` (tiny random model, small synthetic inbox, two
steps, evals; settings from environment variables) and collects metrics.jsonl, the eval JSON
files and the step trajectories, minus the fields that measure time. The result must equal
``tests/golden/refactor_<variant>.json``, recorded on the code before the settings / loop
reshaping: a refactor that changes what a run computes (sampled tokens, rewards, advantages,
the update, eval statistics) fails here. Floats compare to 1e-6 relative (summation order);
everything else exactly.

Re-record (only for an intended change of behaviour, with the reason in the commit):
``INBOXRL_RECORD_GOLDEN=1 pytest tests/test_refactor_golden.py``.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


def differences(got, want, path="$") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}: keys {sorted(set(got) ^ set(want))} differ"] if set(got) != set(want) else []
        for k in sorted(set(got) & set(want)):
            out += differences(got[k], want[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: length {len(got)} != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9) else [f"{path}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{path}: {got!r} != {want!r}"]


def test_differences_finds_what_changed():
    want = {"a": [1, 2.0, {"b": "x"}], "c": 0.5}
    assert differences(want, want) == []
    assert differences({"a": [1, 2.0 + 1e-12, {"b": "x"}], "c": 0.5}, want) == []
    assert differences({"a": [1, 2.1, {"b": "y"}], "c": 0.5, "d": 1}, want) == [
        "$: keys ['d'] differ", "$.a[1]: 2.1 != 2.0", "$.a[2].b: 'y' != 'x'"]
    assert differences({"a": [1, 2.0], "c": 0.5}, want) == ["$.a: length 2 != 3"]


@pytest.mark.parametrize("variant", ["masked", "rollout"])
def test_tiny_run_outputs_equal_the_recorded_ones(variant, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "PYTHONPATH",
                                                                            "INBOXRL_CACHE", "TMPDIR")}
    proc = subprocess.run([sys.executable, str(HERE / "_golden_run.py"), str(tmp_path), variant],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads((tmp_path / "outputs.json").read_text())
    golden = GOLDEN / f"refactor_{variant}.json"
    if os.environ.get("INBOXRL_RECORD_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, sort_keys=True, separators=(",", ":")) + "\n")
    want = json.loads(golden.read_text())
    assert got["metrics"] and any(r["groups_kept"] > 0 and r["grad_norm"] > 0 for r in got["metrics"])
    diffs = differences(got, want)
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:10])
