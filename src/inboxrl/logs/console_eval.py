"""Pure formatter of the evaluation console report: the Detailed Rubric Statistics table."""
from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


def _share(count: int, total: int) -> str:
    pct = 100.0 * count / total if total else 0.0
    return f"{count}/{total} ({pct:.1f}%)"


def _opt(value: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def rubric_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the Detailed Rubric Statistics, from an ``eval_statistics`` dict."""
    n = int(stats["total_samples"])
    judged = int(stats.get("judged_samples", n))
    if stats.get("beat_rate") is None:
        beat = "no baseline"
    else:
        beat = (f"{100 * stats['beat_rate']:.1f}% (ties {100 * (stats.get('tie_rate') or 0):.1f}%, "
                f"{stats.get('baseline_compared', 0)} scenarios)")
    acc = stats.get("accuracy")
    return [
        ("Attempted answers", _share(int(stats["num_attempted"]), n)),
        ("Found correct email", _share(int(stats["num_found"]), n)),
        ("Read correct email", _share(int(stats["num_read"]), n)),
        ("Repeated searches", f"{stats['total_repeated_searches']} of {stats['total_searches']} "
                              f"({stats['total_unique_searches']} unique)"),
        ("Avg turns (correct answers)", _opt(stats.get("avg_turns_correct"))),
        ("Avg turns (\"I don't know\")",
         f"{_opt(stats.get('avg_turns_idk'))} ({stats['num_idk']} answers)"),
        ("Avg search attempts", _opt(stats.get("avg_search_attempts"))),
        ("Valid tool calls (of turns)", _opt(stats.get("valid_call_rate"), "{:.1%}")),
        ("Search as first call", _opt(stats.get("first_search_rate"), "{:.1%}")),
        ("Accuracy", "n/a" if acc is None else
         f"{100 * acc:.1f}% ({stats['correct_answers']}/{judged})"),
        ("Avg reward", "n/a (no sample judged)" if stats["avg_reward"] is None
         else f"{stats['avg_reward']:+.3f} (std {stats['std_reward']:.3f})"),
        ("Beat rate vs baseline", beat),
        ("Judge errors", f"{stats.get('judge_errors', 0)}"),
        ("Eval time", f"{stats.get('eval_time', 0.0):.1f}s"),
    ]


def rubric_table(stats: dict[str, Any]) -> Table:
    """The ``Detailed Rubric Statistics`` table of one evaluation."""
    table = Table(title="Detailed Rubric Statistics", title_justify="left", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in rubric_rows(stats):
        table.add_row(Text(label), Text(value))
    return table
