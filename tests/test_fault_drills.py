"""Fault drills: a tiny run SIGKILLed at each named point (``INBOXRL_FAULT``), then ``--resume``d,
must equal an uninterrupted run: weights, optimizer, scheduler and RNG of every listed
checkpoint and of ``best/`` bit-identical, each step's metrics once with the same values (up to
timings), the same evals, files and final state, and nothing left over (docs/robustness.md).

The drill run (bench/fault_drill.py): 3 steps, evals at 0, 2 and a final one at 3, a checkpoint
every step keeping 1, new bests forced at steps 2 and 3, so every point is passed: checkpoints
are replaced and pruned, ``best/`` is made and replaced.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from _fault_util import KILLED, run_forked

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fault_drill  # noqa: E402
from inboxrl.utils.faults import POINTS  # noqa: E402

# point[:n-th pass] -> what the kill must have left for the resume to clean up (a name prefix)
DRILLS = {
    "ckpt.partial:2": "checkpoints/.checkpoint-0002.tmp-",
    "ckpt.before_install:1": "checkpoints/.checkpoint-0001.tmp-",
    "ckpt.replace_moved": "checkpoints/.checkpoint-0003.old-",
    "ckpt.installed:2": None,
    "ckpt.prune_renamed": "checkpoints/.checkpoint-0001.trash-",
    "ckpt.prune_partial:2": "checkpoints/.checkpoint-0002.trash-",
    "best.before_copy": None,
    "best.partial:2": ".best.tmp-",
    "best.replace_moved": ".best.old-",
    "metrics.partial_line:3": None,
    "metrics.after_train:2": None,
    "eval.after_row:3": None,
    "run.before_final": None,
}


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    root = tmp_path_factory.mktemp("drill")
    assets = fault_drill.make_assets(root)
    assert run_forked(lambda: fault_drill.train(assets, root / "reference", resume=False)) == 0
    return root, assets


def test_every_fault_point_is_drilled():
    assert sorted(p.partition(":")[0] for p in DRILLS) == sorted(POINTS)


@pytest.mark.slow
@pytest.mark.parametrize("point", list(DRILLS))
def test_kill_then_resume_equals_the_uninterrupted_run(drill, point):
    root, assets = drill
    out = root / point.replace(":", "_")
    assert run_forked(lambda: fault_drill.train(assets, out, resume=False), fault=point) == KILLED
    left = fault_drill.leftovers(out)
    if DRILLS[point]:
        assert any(x.startswith(DRILLS[point]) for x in left), left
    if point == "metrics.partial_line:3":
        assert not (out / "metrics.jsonl").read_text().endswith("\n")
    assert run_forked(lambda: fault_drill.train(assets, out, resume=True)) == 0
    assert fault_drill.compare(root / "reference", out) == []
    assert fault_drill.leftovers(out) == []
