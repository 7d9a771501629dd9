"""Metric sinks: ``{output_dir}/metrics.jsonl`` always, Weights & Biases when available.

One JSON object per line, flushed after each write:

* ``metrics.jsonl``, one line per training step: ``{"kind": "train", **TrainingMetrics.to_flat()}``;
* ``eval_metrics.jsonl``, one line per evaluation: ``{"kind": "eval", **eval_statistics(...)}``
  without the ``per_scenario`` rows (those are in ``eval_logs/eval_step_NNNN.json``).

Crash safety: each row is written with one ``write``, flushed and fsynced, so a kill leaves at
most a partial last line. A run that starts from step ``s`` (``start_step``: 0 for a fresh run,
the checkpoint's step for ``--resume``) first rewrites both files atomically to what that step
had written: rows of later steps (and evals after ``last_eval_step``) and unreadable lines are
dropped, so every step appears once, with the values of the run that wrote the checkpoint.
Readers keep the last row of each (kind, step) and skip unreadable lines anywhere.

wandb: the mode is ``wandb_mode``, else ``$WANDB_MODE``, else ``online`` when a project is named
(``wandb_project`` or ``$WANDB_PROJECT``) and ``disabled`` otherwise. Runs are written under
``$WANDB_DIR`` when set, else under ``output_dir``. When wandb is not installed, or
``wandb.init`` fails (e.g. online without credentials), one notice is printed and only the
JSON lines are written. Train values are logged as ``train/*`` and evals as ``eval/*``,
both with ``step=``. The wandb run id is kept in ``{output_dir}/wandb_run.json``: a resumed run
(``start_step`` > 0) continues the same run with each step once (:mod:`inboxrl.logs.wandb_resume`:
offline, the earlier offline directories of the id are replaced by one that the rewound metric
files are replayed into; online, the run is rewound to the step). Only the main process (rank 0)
writes anything.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

from inboxrl.logs import wandb_resume
from inboxrl.logs.eval_stats import eval_to_wandb
from inboxrl.logs.metrics import TrainingMetrics
from inboxrl.utils.atomic import atomic_write_json, atomic_write_text
from inboxrl.utils.dist import is_main_process
from inboxrl.utils.faults import armed, fault_point

METRICS_FILE = "metrics.jsonl"
EVAL_METRICS_FILE = "eval_metrics.jsonl"
WANDB_RUN_FILE = "wandb_run.json"
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
    """Writes every step's metrics and every eval to ``metrics.jsonl`` and (optionally) wandb.

    ``start_step`` (None: append to whatever is there) rewinds both files to that step first, and
    ``last_eval_step`` (default ``start_step``) says which evals the starting state had done.
    """

    def __init__(self, output_dir: str | Path, wandb_project: str | None = None,
                 wandb_entity: str | None = None, wandb_name: str | None = None,
                 wandb_mode: str | None = None, config: dict[str, Any] | None = None,
                 notice: Callable[[str], None] = print, start_step: int | None = None,
                 last_eval_step: int | None = None, main_process: bool | None = None):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / METRICS_FILE
        self.eval_path = self.output_dir / EVAL_METRICS_FILE
        self.main = is_main_process() if main_process is None else main_process
        self._notice = notice
        self.wandb_mode = resolve_wandb_mode(wandb_mode, wandb_project)
        self.run: Any = None
        self._file: Any = None
        self._eval_file: Any = None
        if not self.main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if start_step is not None:
            last_eval = start_step if last_eval_step is None else last_eval_step
            dropped = rewind_metrics(self.output_dir, start_step, last_eval)
            if dropped:
                notice(f"Metrics: dropped {dropped} rows written after step {start_step} "
                       "(or unreadable) from metrics.jsonl / eval_metrics.jsonl")
        self._file = open(self.path, "a", encoding="utf-8")
        self._eval_file = open(self.eval_path, "a", encoding="utf-8")
        if self.wandb_mode != "disabled":
            run_id = wandb_run_id(self.output_dir, resume=bool(start_step))
            self.run = self._init_wandb(dict(project=wandb_project or os.environ.get("WANDB_PROJECT")
                                             or DEFAULT_PROJECT, entity=wandb_entity, name=wandb_name,
                                             config=config or {}), run_id, start_step or 0)

    def _init_wandb(self, kwargs: dict[str, Any], run_id: str, start_step: int) -> Any:
        """Start (or continue, ``start_step`` > 0) the wandb run, each step once in its history."""
        try:
            import wandb
        except ImportError:
            self._notice("wandb is not installed: logging to metrics.jsonl only "
                         "(pip install 'inboxrl[wandb]' to enable it)")
            return None
        wandb_dir = os.environ.get("WANDB_DIR") or str(self.output_dir)
        kwargs.update(mode=self.wandb_mode, dir=wandb_dir, reinit="finish_previous")
        try:
            if not start_step:
                return wandb.init(id=run_id, resume="allow", **kwargs)
            if self.wandb_mode == "offline":
                wandb_resume.set_aside(wandb_resume.offline_run_dirs(wandb_dir, run_id))
                run = wandb.init(id=run_id, **kwargs)
                wandb_resume.delete_set_aside(wandb_dir, run_id)
                return self._replay(run, 0)
            run, rewound = self._rewind(wandb, kwargs, run_id, start_step)
            return self._replay(run, start_step) if rewound else run
        except Exception as e:  # wandb raises many types (auth, network, usage)
            self._notice(f"wandb could not start ({type(e).__name__}: {e}); "
                         "logging to metrics.jsonl only")
            return None

    def _rewind(self, wandb: Any, kwargs: dict[str, Any], run_id: str, step: int) -> tuple[Any, bool]:
        """The online run rewound to ``step`` (True), or reopened as it is (False)."""
        try:
            return wandb.init(resume_from=f"{run_id}?_step={step}", **kwargs), True
        except Exception as e:  # rewind is a W&B preview feature: the server may refuse it
            self._notice(f"wandb could not rewind run {run_id} to step {step} ({type(e).__name__}: {e}); "
                         "reopened it instead: the steps it already has keep the earlier run's values")
            return wandb.init(id=run_id, resume="allow", **kwargs), False

    def _replay(self, run: Any, from_step: int) -> Any:
        """Log the metric files' rows of steps >= ``from_step`` into ``run`` again (their steps)."""
        train, evals = read_metrics(self.path)
        for step, values in wandb_resume.replay(train, evals, from_step):
            run.log(values, step=step)
        return run

    @staticmethod
    def _write(file: Any, row: dict[str, Any]) -> None:
        line = json.dumps(row, default=str) + "\n"
        if armed("metrics.partial_line"):  # fault drills only: a kill in the middle of a row
            file.write(line[: len(line) // 2])
            file.flush()
            fault_point("metrics.partial_line")
            line = line[len(line) // 2:]
        file.write(line)
        file.flush()
        os.fsync(file.fileno())

    def _wandb_log(self, values: dict[str, Any], step: int) -> None:
        if self.run is not None and step >= int(getattr(self.run, "step", 0) or 0):
            self.run.log(values, step=step)

    def log_train(self, metrics: TrainingMetrics) -> None:
        """One ``kind: train`` line; ``train/*`` to wandb at ``step=metrics.step``."""
        if not self.main:
            return
        self._write(self._file, {"kind": "train", **metrics.to_flat()})
        self._wandb_log(metrics.to_wandb(), metrics.step)

    def log_eval(self, stats: dict[str, Any], step: int | None = None) -> None:
        """One ``kind: eval`` line (no per-scenario rows); ``eval/*`` to wandb at ``step=``
        (``step`` defaults to ``stats["step"]``)."""
        if not self.main:
            return
        step = int(stats["step"] if step is None else step)
        row = {k: v for k, v in stats.items() if k != "per_scenario"}
        self._write(self._eval_file, {"kind": "eval", **row, "step": step})
        self._wandb_log(eval_to_wandb(stats), step)

    def close(self) -> None:
        """Close the file and finish the wandb run (idempotent)."""
        for f in (self._file, self._eval_file):
            if f is not None and not f.closed:
                f.close()
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __enter__(self) -> "MetricsSinks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def wandb_run_id(output_dir: str | Path, resume: bool) -> str:
    """The wandb run id of the run in ``output_dir``: the saved one when resuming (and one was
    saved), else a new one, saved atomically in ``wandb_run.json``."""
    path = Path(output_dir) / WANDB_RUN_FILE
    if resume:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))["id"]
            if isinstance(saved, str) and saved:
                return saved
        except (OSError, ValueError, KeyError, TypeError):
            pass
    run_id = secrets.token_hex(4)
    atomic_write_json(path, {"id": run_id})
    return run_id


def parse_row(line: str) -> dict[str, Any] | None:
    """A metrics row (a JSON object with a ``step``), or None for a blank / partial / foreign line.

    A line that a crash left partial and the next row was appended to (files written before
    crash repair existed) gives that next row."""
    line = line.strip()
    if not line:
        return None
    for start in [0] + [i for i in range(1, len(line)) if line.startswith('{"', i)]:
        try:
            row = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        return row if isinstance(row, dict) and "step" in row else None
    return None


def rewind_metrics(output_dir: str | Path, step: int, last_eval_step: int) -> int:
    """Rewrite ``metrics.jsonl`` (train rows of steps <= ``step``) and ``eval_metrics.jsonl``
    (evals of steps <= ``last_eval_step``) atomically, unreadable lines and repeated steps (the
    last row kept) dropped; returns how many lines were dropped (0: the files are left alone)."""
    dropped = 0
    for name, last in ((METRICS_FILE, step), (EVAL_METRICS_FILE, last_eval_step)):
        path = Path(output_dir) / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        rows: dict[int, dict[str, Any]] = {}
        for line in lines:
            row = parse_row(line)
            if row is not None and int(row["step"]) <= last:
                rows[int(row["step"])] = row
        kept = "".join(json.dumps(rows[s], default=str) + "\n" for s in sorted(rows))
        if kept != text:
            atomic_write_text(path, kept)
            dropped += len(lines) - len(rows)
    return dropped


def read_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, eval rows) of a ``metrics.jsonl`` and the ``eval_metrics.jsonl`` beside it,
    the last row per step kept, by step.

    Rows without ``kind`` count as train rows; unreadable lines (a crash mid-write) are skipped
    (:func:`parse_row`).
    """
    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    path = Path(path)
    paths = [path] + [p for p in [path.with_name(EVAL_METRICS_FILE)] if p.is_file() and p != path]
    for line in (line for p in paths for line in p.read_text(encoding="utf-8", errors="replace").splitlines()):
        row = parse_row(line)
        if row is not None:
            (evals if row.get("kind") == "eval" else train)[int(row["step"])] = row
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]
