"""Metric sinks: ``{output_dir}/metrics.jsonl`` always, Weights & Biases when available.

One JSON object per line, flushed after each write:

* ``metrics.jsonl``, one line per training step: ``{"kind": "train", **TrainingMetrics.to_flat()}``;
* ``eval_metrics.jsonl``, one line per evaluation: ``{"kind": "eval", **eval_statistics(...)}``
  without the ``per_scenario`` rows (those are in ``eval_logs/eval_step_NNNN.json``).

A resumed run appends to the same files; readers keep the last row of each (kind, step).

wandb: the mode is ``wandb_mode``, else ``$WANDB_MODE``, else ``online`` when a project is named
(``wandb_project`` or ``$WANDB_PROJECT``) and ``disabled`` otherwise. Runs are written under
``$WANDB_DIR`` when set, else under ``output_dir``. When wandb is not installed, or
``wandb.init`` fails (e.g. online without credentials), one notice is printed and only the
JSON lines are written. Train values are logged as ``train/*`` and evals as ``eval/*``,
both with ``step=``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from inboxrl.logs.eval_stats import eval_to_wandb
from inboxrl.logs.metrics import TrainingMetrics

METRICS_FILE = "metrics.jsonl"
EVAL_METRICS_FILE = "eval_metrics.jsonl"
DEFAULT_PROJECT = "inboxrl"
WANDB_MODES = ("online", "offline", "disabled")


def resolve_wandb_mode(wandb_mode: str | None, wandb_project: str | None) -> str:
    """The wandb mode by the rule in the module docstring; ``ValueError`` on an unknown mode."""
    mode = wandb_mode or os.environ.get("WANDB_MODE") or (
        "online" if (wandb_project or os.environ.get("WANDB_PROJECT")) else "disabled")
    mode = mode.strip().lower()
    if mode == "dryrun":
        mode = "offline"
    if mode not in WANDB_MODES:
        raise ValueError(f"wandb mode must be one of {', '.join(WANDB_MODES)}; got {mode!r}")
    return mode


class MetricsSinks:
    """Writes every step's metrics and every eval to ``metrics.jsonl`` and (optionally) wandb."""

    def __init__(self, output_dir: str | Path, wandb_project: str | None = None,
                 wandb_entity: str | None = None, wandb_name: str | None = None,
                 wandb_mode: str | None = None, config: dict[str, Any] | None = None,
                 notice: Callable[[str], None] = print):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / METRICS_FILE
        self.eval_path = self.output_dir / EVAL_METRICS_FILE
        self._file = open(self.path, "a", encoding="utf-8")
        self._eval_file = open(self.eval_path, "a", encoding="utf-8")
        self._notice = notice
        self.wandb_mode = resolve_wandb_mode(wandb_mode, wandb_project)
        self.run: Any = None
        if self.wandb_mode != "disabled":
            self.run = self._init_wandb(wandb_project, wandb_entity, wandb_name, config or {})

    def _init_wandb(self, project: str | None, entity: str | None, name: str | None,
                    config: dict[str, Any]) -> Any:
        try:
            import wandb
        except ImportError:
            self._notice("wandb is not installed: logging to metrics.jsonl only "
                         "(pip install 'inboxrl[wandb]' to enable it)")
            return None
        wandb_dir = os.environ.get("WANDB_DIR") or str(self.output_dir)
        try:
            return wandb.init(project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                              entity=entity, name=name, config=config, mode=self.wandb_mode,
                              dir=wandb_dir, reinit="finish_previous")
        except Exception as e:  # wandb raises many types (auth, network, usage)
            self._notice(f"wandb could not start ({type(e).__name__}: {e}); "
                         "logging to metrics.jsonl only")
            return None

    @staticmethod
    def _write(file: Any, row: dict[str, Any]) -> None:
        file.write(json.dumps(row, default=str) + "\n")
        file.flush()

    def log_train(self, metrics: TrainingMetrics) -> None:
        """One ``kind: train`` line; ``train/*`` to wandb at ``step=metrics.step``."""
        self._write(self._file, {"kind": "train", **metrics.to_flat()})
        if self.run is not None:
            self.run.log(metrics.to_wandb(), step=metrics.step)

    def log_eval(self, stats: dict[str, Any], step: int | None = None) -> None:
        """One ``kind: eval`` line (no per-scenario rows); ``eval/*`` to wandb at ``step=``
        (``step`` defaults to ``stats["step"]``)."""
        step = int(stats["step"] if step is None else step)
        row = {k: v for k, v in stats.items() if k != "per_scenario"}
        self._write(self._eval_file, {"kind": "eval", **row, "step": step})
        if self.run is not None:
            self.run.log(eval_to_wandb(stats), step=step)

    def close(self) -> None:
        """Close the file and finish the wandb run (idempotent)."""
        for f in (self._file, self._eval_file):
            if not f.closed:
                f.close()
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __enter__(self) -> "MetricsSinks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, eval rows) of a ``metrics.jsonl`` and the ``eval_metrics.jsonl`` beside it,
    the last row per step kept, by step.

    Rows without ``kind`` count as train rows; a truncated last line (a crash mid-write) is skipped.
    """
    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    path = Path(path)
    paths = [path] + [p for p in [path.with_name(EVAL_METRICS_FILE)] if p.is_file() and p != path]
    for line in (line for p in paths for line in p.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or "step" not in row:
            continue
        (evals if row.get("kind") == "eval" else train)[int(row["step"])] = row
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]
