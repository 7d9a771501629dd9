"""wandb on ``--resume``: the run's history ends up with each step once, the values of the run
that wrote the checkpoint for steps <= s (the step resumed from) and the resumed run's after.

The metric files are the record: by the time wandb starts, ``metrics.jsonl`` and
``eval_metrics.jsonl`` hold exactly what step s had written (:func:`inboxrl.logs.sinks.rewind_metrics`).

* **offline** (``wandb sync`` uploads later): every earlier offline directory of the run id
  (``{wandb_dir}/wandb/offline-run-*-{id}``: the killed run's, with steps after s) is renamed
  to a hidden ``.offline-run-…-{id}.replaced-PID`` first, which ``wandb sync`` does not see;
  the new offline run is started, the rows of the metric files are logged into it again with
  their steps (:func:`replay`), and then the hidden directories are deleted. A kill in between
  leaves hidden directories (deleted by the next resume) and at most one visible directory,
  which the next resume replaces in turn.
* **online**: the run is rewound with ``resume_from="{id}?_step={s}"`` (wandb >= 0.17.1; the
  W&B docs example rewinds to ``_step=200`` and logs again from step 200: the history keeps the
  steps before it), then the rows of step s are replayed and the run goes on. Rewind is a W&B
  preview feature: when the server refuses it, the run is reopened with ``resume="allow"`` and
  steps wandb already has are not logged again (they keep the killed run's values), with a
  notice saying so.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from inboxrl.logs.eval_stats import eval_to_wandb
from inboxrl.logs.metrics import train_row_to_wandb

SET_ASIDE = ".replaced-"


def wandb_root(wandb_dir: str | Path) -> Path:
    """Where wandb puts its run directories for ``wandb.init(dir=wandb_dir)``."""
    return Path(wandb_dir) / "wandb"


def offline_run_dirs(wandb_dir: str | Path, run_id: str) -> list[Path]:
    """The offline run directories of ``run_id`` that ``wandb sync`` would upload, oldest first."""
    root = wandb_root(wandb_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("offline-run-") and p.name.endswith(f"-{run_id}")
                  and p.is_dir() and not p.is_symlink())


def set_aside(dirs: list[Path]) -> list[Path]:
    """Rename each directory to a hidden ``.NAME.replaced-PID`` (out of ``wandb sync``'s sight)."""
    moved = []
    for d in dirs:
        target = d.with_name(f".{d.name}{SET_ASIDE}{os.getpid()}")
        os.replace(d, target)
        moved.append(target)
    return moved


def delete_set_aside(wandb_dir: str | Path, run_id: str) -> int:
    """Delete every set-aside directory of ``run_id`` (this run's, and any a killed resume left)."""
    root = wandb_root(wandb_dir)
    if not root.is_dir():
        return 0
    gone = [p for p in root.iterdir() if p.name.startswith(".offline-run-") and SET_ASIDE in p.name
            and p.name.split(SET_ASIDE)[0].endswith(f"-{run_id}")]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return len(gone)


def replay(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]],
           from_step: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(step, wandb values)`` of the rows of steps >= ``from_step``, in logging order: by step,
    a step's train row before its eval (as the loop logs them)."""
    rows = [(int(r["step"]), 0, train_row_to_wandb(r)) for r in train_rows if int(r["step"]) >= from_step]
    rows += [(int(r["step"]), 1, eval_to_wandb(r)) for r in eval_rows if int(r["step"]) >= from_step]
    for step, _, values in sorted(rows, key=lambda x: (x[0], x[1])):
        if values:
            yield step, values
