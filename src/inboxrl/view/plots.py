"""The overview's plots: eval trend and train curves as SVG files, drawn with matplotlib (Agg).

Each plot takes its series from ``metrics.jsonl`` rows (train) or eval dicts (eval) by key; a
key that no row has is left out, a plot with no series at all is not drawn.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from inboxrl.utils.atomic import atomic_write_bytes


@dataclass(frozen=True)
class PlotSpec:
    file: str
    title: str
    ylabel: str
    series: tuple[tuple[str, str], ...]  # (label, key)
    stacked: bool = False
    share: bool = False  # values are shares 0..1, shown as %


EVAL_PLOTS = (
    PlotSpec("eval_rates.svg", "Eval trend: rates", "% of scenarios",
             (("accuracy", "accuracy"), ("found the right email", "found_correct_email"),
              ("read the right email", "read_correct_email"), ("valid tool calls", "valid_call_rate"),
              ("beat rate vs baseline", "beat_rate")), share=True),
    PlotSpec("eval_reward.svg", "Eval trend: average reward", "reward", (("avg reward", "avg_reward"),)),
)
TRAIN_PLOTS = (
    PlotSpec("train_reward.svg", "Train reward", "reward",
             (("avg reward", "avg_reward"), ("moving average", "reward_moving_avg"),
              ("min", "min_reward"), ("max", "max_reward"))),
    PlotSpec("train_accuracy.svg", "Train accuracy", "% of rollouts", (("accuracy", "accuracy"),), share=True),
    PlotSpec("train_groups.svg", "Groups kept / filtered", "groups",
             (("kept", "groups_kept"), ("filtered", "groups_filtered")), stacked=True),
    PlotSpec("train_early_exits.svg", "Early exits", "rollouts", (("finished early", "num_early_exit"),)),
    PlotSpec("train_tokens.svg", "Tokens per step", "tokens",
             (("total", "total_tokens"), ("trainable", "trainable_tokens"))),
    PlotSpec("train_grad_norm.svg", "Grad norm", "norm", (("grad norm", "grad_norm"),)),
    PlotSpec("train_step_time.svg", "Step time: rollout / update", "seconds",
             (("rollout", "rollout_time"), ("update", "training_time")), stacked=True),
)


def _points(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            xs.append(int(r["step"]))
            ys.append(float(v))
    return xs, ys


def draw(spec: PlotSpec, rows: Sequence[dict[str, Any]]) -> bytes | None:
    """The SVG of one plot, or None when none of its keys has a value."""
    from matplotlib.figure import Figure

    series = [(label, *_points(rows, key)) for label, key in spec.series]
    series = [s for s in series if s[1]]
    if not series:
        return None
    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.add_subplot()
    scale = 100.0 if spec.share else 1.0
    if spec.stacked and len({tuple(s[1]) for s in series}) == 1:
        ax.stackplot(series[0][1], *[[y * scale for y in s[2]] for s in series],
                     labels=[s[0] for s in series], alpha=0.8)
    else:
        for label, xs, ys in series:
            ax.plot(xs, [y * scale for y in ys], label=label, marker="o" if len(xs) < 30 else None,
                    markersize=3, linewidth=1.4)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if spec.share:
        ax.set_ylim(-3, 103)
    ax.set_title(spec.title)
    ax.set_xlabel("step")
    ax.set_ylabel(spec.ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1 or spec.stacked:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def write_plots(folder: Path, specs: Sequence[PlotSpec], rows: Sequence[dict[str, Any]],
                prefix: str = "plots/") -> list[dict[str, str]]:
    """Draw each plot into ``folder``; return ``{"file", "title"}`` of those drawn."""
    drawn = []
    for spec in specs:
        svg = draw(spec, rows)
        if svg is not None:
            atomic_write_bytes(folder / spec.file, svg, fsync=False)
            drawn.append({"file": prefix + spec.file, "title": spec.title})
    return drawn
