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

import os
import re
from pathlib import Path
from typing import Any, Callable

from inboxrl.grpo import checkpoint as ckpt
from inboxrl.logs.sinks import EVAL_METRICS_FILE, METRICS_FILE, WANDB_RUN_FILE
from inboxrl.settings.base import ConfigError
from inboxrl.utils.dist import is_main_process
from inboxrl.utils.faults import fault_point
from inboxrl.utils.run_lock import RunLock

CHECKPOINTS_DIR = "checkpoints"
# per-step / per-eval files a resume from step s must drop when they belong to later steps
_STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")
_EVAL_FILE = re.compile(r"^eval_step_(\d+)(?:_trajectories)?\.jsonl?$")
# what a training run leaves in its output directory that a new run there must not mix with
# (an overwrite removes them; config.json and validation_ids.json every run rewrites)
RUN_OUTPUTS = (CHECKPOINTS_DIR, ckpt.BEST, METRICS_FILE, EVAL_METRICS_FILE, "eval_logs", "trajectories",
               WANDB_RUN_FILE, "trainer_state.json")


class CheckpointStore:
    """``{output_dir}/checkpoints`` and ``{output_dir}/best`` of one run."""

    def __init__(self, output_dir: str | Path, keep_last: int = 2, main_process: bool | None = None):
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / CHECKPOINTS_DIR
        self.keep_last = keep_last
        self.main = is_main_process() if main_process is None else main_process
        self.lock = RunLock(self.output_dir)
        self.overwritten: list[str] = []  # what open() deleted of an earlier run (overwrite)

    # -- start / end -----------------------------------------------------------------------------
    def open(self, fresh: bool = False, overwrite: bool = False) -> list[str]:
        """Take the lock (rank 0; :class:`~inboxrl.utils.run_lock.RunLockedError` when another
        run holds it) and clean what killed runs left; returns the clean-up notes.

        ``fresh`` (a run that does not resume): when an earlier run's checkpoints or ``best/`` are
        there, ``ConfigError`` (the lock released) unless ``overwrite``, which deletes that run's
        outputs (:data:`RUN_OUTPUTS`, :func:`remove_run_outputs`; their names: ``overwritten``)."""
        if not self.main:
            return []
        self.lock.acquire()
        try:
            notes = ckpt.recover(self.root) + ckpt.recover(self.output_dir, owned=RUN_OUTPUTS)
            for sub in ("eval_logs", "trajectories"):
                notes += ckpt.recover(self.output_dir / sub)
            if fresh:
                self._start_over(overwrite)
        except BaseException:
            self.lock.release()
            raise
        return notes

    def earlier_run(self) -> str | None:
        """What an earlier run left that a new run would mix with: its checkpoints (a later
        ``--resume`` would pick them) or ``best/``; None when there is neither."""
        steps = [int(p.name[len(ckpt.PREFIX):]) for p in ckpt.list_checkpoints(self.root)]
        best = ckpt.is_complete(self.output_dir / ckpt.BEST)
        found = ([f"checkpoints of steps {', '.join(map(str, steps))}"] if steps else []) + (["best/"] if best else [])
        return " and ".join(found) or None

    def _start_over(self, overwrite: bool) -> None:
        found = self.earlier_run()
        if found is None:
            return
        if not overwrite:
            raise ConfigError(f"output_dir {self.output_dir} holds an earlier run ({found}): continue it with "
                              "--resume, choose a new --output-dir, or pass --overwrite-output-dir to delete "
                              "its outputs")
        self.overwritten = remove_run_outputs(self.output_dir)

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


def remove_run_outputs(output_dir: str | Path) -> list[str]:
    """Delete the :data:`RUN_OUTPUTS` of ``output_dir``: each is first renamed to a hidden
    ``.NAME.trash-PID`` (out of every listing: a kill mid-way leaves only entries the next start's
    :func:`~inboxrl.grpo.checkpoint.recover` deletes), then all are deleted. Returns the names."""
    root = Path(output_dir)
    moved = []
    for name in RUN_OUTPUTS:
        path = root / name
        if path.exists() or path.is_symlink():
            trash = root / f".{name}.trash-{os.getpid()}"
            os.replace(path, trash)
            moved.append((name, trash))
    if moved:
        ckpt.fsync_dir(root)
    for _, trash in moved:
        ckpt.remove(trash)
    return [name for name, _ in moved]
