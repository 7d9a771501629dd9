"""Named crash points for fault drills: ``INBOXRL_FAULT=<point>`` makes the process SIGKILL itself
when it reaches that point (``<point>:<n>``: the n-th time it is reached, 1-based).

A test-only hook: with the variable unset, :func:`fault_point` is one dictionary lookup. The
drills (``tests/test_fault_drills.py``, ``bench/fault_drill.py``) kill a tiny run at each point,
resume it and compare it with an uninterrupted run; docs/results.md has the table.
"""
from __future__ import annotations

import os
import signal

ENV = "INBOXRL_FAULT"

# Every point the training loop, the checkpoint store and the metric sinks pass through.
POINTS = (
    "ckpt.partial",          # checkpoint temp dir half written (weights, no optimizer / manifest)
    "ckpt.before_install",   # temp dir complete with its manifest, not yet renamed into place
    "ckpt.replace_moved",    # replacing checkpoint-N: the old one moved aside, the new one not in
    "ckpt.installed",        # checkpoint-N in place, older ones not yet pruned
    "ckpt.prune_renamed",    # a pruned checkpoint renamed out of the listing, not yet deleted
    "ckpt.prune_partial",    # a pruned checkpoint half deleted
    "best.before_copy",      # checkpoint-N (whose state names best/) saved, best/ not yet copied
    "best.partial",          # best/ temp copy half written
    "best.replace_moved",    # old best/ moved aside, the new one not yet renamed in
    "metrics.partial_line",  # half of a metrics.jsonl row written
    "metrics.after_train",   # a step's metrics row written, its trajectories and checkpoint not
    "eval.after_row",        # an eval row written, the checkpoint after it not
    "run.before_final",      # all steps done, before the final eval and trainer_state.json
)


def armed(name: str) -> bool:
    """True when ``$INBOXRL_FAULT`` names ``name`` (whatever its hit count)."""
    wanted = os.environ.get(ENV)
    return bool(wanted) and wanted.partition(":")[0] == name


def fault_point(name: str) -> None:
    """SIGKILL this process if ``$INBOXRL_FAULT`` names ``name`` (and its hit count is reached)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    if nth:
        _HITS[name] = _HITS.get(name, 0) + 1
        if _HITS[name] < int(nth):
            return
    os.kill(os.getpid(), signal.SIGKILL)


_HITS: dict[str, int] = {}
