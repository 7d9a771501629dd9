"""The checkpoint store of one run: the output directory's lock, start-up recovery, checkpoints
that are pruned without losing the best one, and ``best/`` re-made when a kill lost it.

``best/`` is derived state: the checkpoint whose trainer state first names it (``best_step`` =
its step, ``best_checkpoint`` = ``{output_dir}/best``) is written first, and is never pruned
while it is the best; ``best/`` is then copied from it. A kill between the two (or between the
two renames of a ``best/`` replacement) is repaired by :meth:`CheckpointStore.ensure_best`, which
a resume calls: it re-copies ``checkpoint-{best_step}`` when ``best/`` is missing or holds
another step. Only the main process (rank 0) writes (:mod:`inboxrl.utils.dist`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from inboxrl.grpo import checkpoint as ckpt
from inboxrl.utils.dist import is_main_process
from inboxrl.utils.faults import fault_point
from inboxrl.utils.run_lock import RunLock

CHECKPOINTS_DIR = "checkpoints"
# per-step / per-eval files a resume from step s must drop when they belong to later steps
_STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")
_EVAL_FILE = re.compile(r"^eval_step_(\d+)(?:_trajectories)?\.jsonl?$")


class CheckpointStore:
    """``{output_dir}/checkpoints`` and ``{output_dir}/best`` of one run."""

    def __init__(self, output_dir: str | Path, keep_last: int = 2, main_process: bool | None = None):
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / CHECKPOINTS_DIR
        self.keep_last = keep_last
        self.main = is_main_process() if main_process is None else main_process
        self.lock = RunLock(self.output_dir)

    # -- start / end -----------------------------------------------------------------------------
    def open(self) -> list[str]:
        """Take the lock (rank 0; :class:`~inboxrl.utils.run_lock.RunLockedError` when another
        run holds it) and clean what killed runs left; returns the clean-up notes."""
        if not self.main:
            return []
        self.lock.acquire()
        notes = ckpt.recover(self.root) + ckpt.recover(self.output_dir)
        for sub in ("eval_logs", "trajectories"):
            notes += ckpt.recover(self.output_dir / sub)
        return notes

    def close(self) -> None:
        self.lock.release()

    def latest(self) -> Path | None:
        return ckpt.latest_checkpoint(self.root)

    # -- writing ----------------------------------------------------------------------------------
    def save(self, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any],
             best: bool = False, best_extra: Callable[[Path], None] | None = None,
             rank_rng: list[dict[str, Any]] | None = None,
             full_state: tuple[dict, dict] | None = None) -> Path | None:
        """Write ``checkpoint-{step}`` (protecting the best one from pruning), then, when this
        step is the new best, ``best/`` from it. ``state["best_step"]`` must already name it."""
        if not self.main:
            return None
        best_step = state.get("best_step")
        path = ckpt.save_checkpoint(self.root, step, model, optimizer, scheduler, state,
                                    keep_last=self.keep_last, rank_rng=rank_rng, full_state=full_state,
                                    protect_step=best_step if isinstance(best_step, int) else None)
        if best:
            fault_point("best.before_copy")
            ckpt.save_best(self.output_dir, path, best_extra)
        return path

    def ensure_best(self, state: dict[str, Any], extra: Callable[[Path], None] | None = None) -> str | None:
        """Re-make ``best/`` from ``checkpoint-{best_step}`` when the state names it and ``best/``
        is missing or holds another step; returns a note saying what was done (None: nothing)."""
        step = state.get("best_step")
        if not self.main or not state.get("best_checkpoint") or not isinstance(step, int) or step < 1:
            return None
        best = self.output_dir / ckpt.BEST
        if ckpt.is_complete(best) and ckpt.read_state(best).get("step") == step:
            return None
        src = self.root / f"{ckpt.PREFIX}{step:04d}"
        if not ckpt.is_complete(src):
            return f"warning: the best checkpoint (step {step}) is gone: best/ cannot be re-made"
        ckpt.save_best(self.output_dir, src, extra)
        return f"re-made best/ from {src.name}"

    def rewind_outputs(self, step: int, last_eval_step: int) -> list[str]:
        """Delete the trajectory files of steps after ``step`` and the eval files of evals after
        ``last_eval_step`` (a resume re-creates them); returns what was removed."""
        if not self.main:
            return []
        removed = []
        for sub, pattern, last in (("trajectories", _STEP_FILE, step), ("eval_logs", _EVAL_FILE, last_eval_step)):
            folder = self.output_dir / sub
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                m = pattern.match(path.name)
                if m and int(m.group(1)) > last:
                    path.unlink()
                    removed.append(f"{sub}/{path.name}")
        return removed
