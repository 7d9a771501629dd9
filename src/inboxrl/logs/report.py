"""``inboxrl report OUTPUT_DIR``: the eval trend table and PNG plots of a training run.

Reads ``{output_dir}/metrics.jsonl`` (train rows) and ``{output_dir}/eval_logs/eval_step_*.json``
(evals; the ``kind: eval`` rows of ``metrics.jsonl`` stand in when that folder is empty) and
writes ``plots/reward.png`` (train mean reward, its moving average, eval mean reward) and
``plots/accuracy.png`` (train and eval accuracy) with matplotlib's Agg backend.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from inboxrl.logs.eval_stats import EVAL_DIR
from inboxrl.logs.sinks import METRICS_FILE, read_metrics

PLOTS_DIR = "plots"
_EVAL_NAME = re.compile(r"eval_step_(\d+)\.json$")


class ReportError(RuntimeError):
    """The output directory holds nothing to report on."""


def load_evals(output_dir: str | Path) -> list[dict[str, Any]]:
    """The ``eval_step_NNNN.json`` dicts of a run, by step (unreadable files are skipped)."""
    rows = []
    for p in sorted((Path(output_dir) / EVAL_DIR).glob("eval_step_*.json")):
        if not _EVAL_NAME.search(p.name):
            continue
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and "step" in doc:
            rows.append(doc)
    return sorted(rows, key=lambda d: int(d["step"]))


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def eval_trend_table(evals: Sequence[dict[str, Any]]) -> Table:
    """One row per eval: step, accuracy, found, read, repeated searches, beat rate."""
    table = Table(title="Evaluation trend", title_justify="left")
    for name in ("step", "accuracy", "found email", "read email", "repeated searches",
                 "avg reward", "beat rate"):
        table.add_column(name, justify="right")
    for e in evals:
        repeats = f"{e.get('total_repeated_searches', 0)}/{e.get('total_searches', 0)}"
        reward = "-" if e.get("avg_reward") is None else f"{e['avg_reward']:+.3f}"
        cells = [str(e["step"]), _pct(e.get("accuracy")), _pct(e.get("found_correct_email")),
                 _pct(e.get("read_correct_email")), repeats, reward, _pct(e.get("beat_rate"))]
        table.add_row(*[Text(c) for c in cells])
    return table


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _plot(path: Path, title: str, ylabel: str,
          lines: Sequence[tuple[str, tuple[list[int], list[float]], dict[str, Any]]],
          ylim: tuple[float, float] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        for label, (xs, ys), style in lines:
            if xs:
                ax.plot(xs, ys, label=label, **style)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.legend(loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def write_plots(output_dir: Path, train: Sequence[dict[str, Any]],
                evals: Sequence[dict[str, Any]]) -> list[Path]:
    """``plots/reward.png`` and ``plots/accuracy.png``; returns their paths."""
    plots = output_dir / PLOTS_DIR
    reward = _plot(plots / "reward.png", "Reward over steps", "mean reward", [
        ("train avg reward", _series(train, "avg_reward"), {"alpha": 0.45, "marker": ".", "color": "C0"}),
        ("train moving avg", _series(train, "reward_moving_avg"), {"linewidth": 2.2, "color": "C0"}),
        ("eval avg reward", _series(evals, "avg_reward"), {"marker": "o", "linewidth": 2, "color": "C3"}),
    ])
    acc_lines = []
    for label, rows, style in (("train accuracy", train, {"alpha": 0.6, "marker": ".", "color": "C0"}),
                               ("eval accuracy", evals, {"marker": "o", "linewidth": 2, "color": "C3"})):
        xs, ys = _series(rows, "accuracy")
        acc_lines.append((label, (xs, [100 * y for y in ys]), style))
    accuracy = _plot(plots / "accuracy.png", "Accuracy over steps", "accuracy (%)", acc_lines,
                     ylim=(-3, 103))
    return [reward, accuracy]


def write_report(output_dir: str | Path, console: Console | None = None) -> list[Path]:
    """Print the eval trend table and write the plots; return the plot paths (not printed).

    Raises ``ReportError`` when ``output_dir`` has neither ``metrics.jsonl`` rows nor eval logs.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ReportError(f"{output_dir} is not a directory")
    metrics_path = output_dir / METRICS_FILE
    train, jsonl_evals = read_metrics(metrics_path) if metrics_path.is_file() else ([], [])
    evals = load_evals(output_dir) or jsonl_evals
    if not train and not evals:
        raise ReportError(f"no metrics in {output_dir}: expected {METRICS_FILE} or "
                          f"{EVAL_DIR}/eval_step_*.json from an inboxrl training run")
    if console is None:
        from inboxrl.logs.console import make_console

        console = make_console()
    console.print(Text(f"Run: {output_dir} | {len(train)} training steps, {len(evals)} evals"))
    if evals:
        console.print(eval_trend_table(evals))
    return write_plots(output_dir, train, evals)
