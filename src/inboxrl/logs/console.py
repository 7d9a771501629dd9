"""The training console log (DESIGN.md §6): concise by default, the four phases when verbose.

The trainer calls, per step, in this order::

    log.step_start(step, total_steps)
    log.collecting(group_size, num_queries)        # then the rollout engine's tqdm bar
    log.rollouts_done(groups)                      # after rewards and advantages
    log.micro_batching(num_micro_batches, budget)  # verbose only
    log.optimization(metrics, skip_reason=None)    # verbose block; a skip notice in both modes
    log.step_end(metrics, groups)                  # Group Summary (verbose) + step summary

and ``log.eval_report(stats, path)`` after each evaluation. The formatting lives in the pure
functions of :mod:`inboxrl.logs.console_step` and :mod:`inboxrl.logs.console_eval`.

Output is plain text when stdout is not a terminal (CI logs, files): rich then emits no ANSI
codes, and the width is fixed at 120 columns.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.text import Text

from inboxrl.logs import console_step as fmt
from inboxrl.logs.console_eval import rubric_table
from inboxrl.logs.metrics import GroupView, TrainingMetrics

WIDTH = 120


def make_console() -> Console:
    """A rich Console: the terminal's own width on a TTY, plain 120 columns otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=WIDTH)
    return console


class ConsoleLog:
    """Prints the step logs. ``verbose`` adds the phase headers, per-group rollouts, advantage
    tables, the phase-4 block and the Group Summary."""

    def __init__(self, verbose: bool = False, console: Console | None = None):
        self.verbose = verbose
        self.console = console or make_console()
        self._step_times: list[float] = []

    # -- plumbing ---------------------------------------------------------------------------
    def print(self, obj: Any = "") -> None:
        """Print a renderable, or a string verbatim (never parsed as markup)."""
        self.console.print(Text(obj) if isinstance(obj, str) else obj)

    def notice(self, message: str) -> None:
        self.print(message)

    def _phase(self, n: int) -> None:
        self.print("")
        self.console.print(Text(fmt.PHASE_HEADERS[n], style="bold cyan"))

    # -- one step ---------------------------------------------------------------------------
    def step_start(self, step: int, total_steps: int) -> None:
        self.console.rule(Text(f"Step {step}/{total_steps}"), characters="-")

    def collecting(self, group_size: int, num_queries: int) -> None:
        if self.verbose:
            self._phase(1)
        self.print(f"Collecting {group_size} rollouts for {num_queries} queries...")

    def rollouts_done(self, groups: Sequence[GroupView]) -> None:
        if self.verbose:
            self._phase(2)
            for g in groups:
                self.print(fmt.group_detail(g))
            for g in groups:
                if g.kept:
                    self.print(fmt.advantage_table(g))
        self.print(fmt.groups_line(groups))

    def micro_batching(self, num_micro_batches: int, token_budget: int | None = None,
                       batch_tokens: Sequence[int] | None = None) -> None:
        if self.verbose:
            self._phase(3)
            self.print(fmt.micro_batch_text(num_micro_batches, token_budget, batch_tokens))

    def optimization(self, metrics: TrainingMetrics, skip_reason: str | None = None) -> None:
        if self.verbose:
            self._phase(4)
            self.print(fmt.optimization_text(metrics, skip_reason))
        elif metrics.skipped:
            self.print(fmt.optimization_text(metrics, skip_reason))

    def eta(self, metrics: TrainingMetrics) -> float | None:
        """Mean step time of this session's steps × steps left; None without a total."""
        if not metrics.total_steps or not self._step_times:
            return None
        return statistics.fmean(self._step_times) * max(metrics.total_steps - metrics.step, 0)

    def step_end(self, metrics: TrainingMetrics, groups: Sequence[GroupView]) -> None:
        self._step_times.append(metrics.step_time)
        if self.verbose:
            self.print("")
            self.print(fmt.group_summary_table(groups, metrics))
        self.print(fmt.step_summary_text(metrics, self.eta(metrics)))

    # -- evaluation -------------------------------------------------------------------------
    def eval_start(self, step: int, num_scenarios: int) -> None:
        self.print(f"Evaluating step {step} on {num_scenarios} scenarios...")

    def eval_report(self, stats: dict[str, Any], path: str | Path | None) -> None:
        """Print the Detailed Rubric Statistics, then ``Saved eval to <path>``."""
        self.print(rubric_table(stats))
        if path is not None:
            self.print(f"Saved eval to {path}")
