"""The training console log (DESIGN.md §6): concise by default, the four phases when verbose.

The trainer calls, per step, in this order::

    log.step_start(step, total_steps)              # alias: step_header
    log.phase(1)                                   # optional: verbose-only header (printed once)
    log.collecting(group_size, num_queries)        # then the rollout engine's tqdm bar
    log.groups(trajectories, scenarios, adv)       # after rewards and advantages
                                                   # (or log.rollouts_done(group_views))
    log.micro_batching(num_micro_batches, budget)  # optional, verbose only
    log.backprop(update_stats)                     # or log.optimization(metrics)
    log.step_end(metrics)                          # = group_summary(metrics) + step_summary(metrics)

and ``log.eval_report(stats, path)`` after each evaluation. Each phase header is printed at
most once per step, only in verbose mode, and in order 1-4. The formatting lives in the
pure functions of :mod:`inboxrl.logs.console_step` and :mod:`inboxrl.logs.console_eval`.

Output is plain text when stdout is not a terminal (CI logs, files): rich then emits no ANSI
codes, and the width is fixed at 120 columns.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.text import Text

from inboxrl.agent.trajectory import Trajectory
from inboxrl.logs import console_step as fmt
from inboxrl.logs.console_eval import rubric_table
from inboxrl.logs.metrics import GroupView, TrainingMetrics, group_views

WIDTH = 120


def make_console() -> Console:
    """A rich Console: the terminal's own width on a TTY, plain 120 columns otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=WIDTH)
    return console


def apply_advantage_stats(groups: list[GroupView], adv: Any) -> list[GroupView]:
    """Take each group's kept flag from ``adv.groups`` (``GroupStats`` with ``group_id``, ``kept``)."""
    by_id = {g.group_id: g for g in getattr(adv, "groups", None) or []}
    for g in groups:
        if g.group_id in by_id:
            g.kept = bool(by_id[g.group_id].kept)
    return groups


class ConsoleLog:
    """Prints the step logs. ``verbose`` adds the phase headers, per-group rollouts, advantage
    tables, the phase-4 block and the Group Summary."""

    def __init__(self, verbose: bool = False, console: Console | None = None):
        self.verbose = verbose
        self.console = console or make_console()
        self._step_times: list[float] = []
        self._phases_shown: set[int] = set()
        self._groups: list[GroupView] = []

    # -- plumbing ---------------------------------------------------------------------------
    def print(self, obj: Any = "") -> None:
        """Print a renderable, or a string verbatim (never parsed as markup)."""
        self.console.print(Text(obj) if isinstance(obj, str) else obj)

    def info(self, message: str) -> None:
        self.print(message)

    notice = info

    def phase(self, n: int, title: str | None = None) -> None:
        """Verbose only: the ``STEP PHASE n: ...`` header, at most once per step; a header not shown
        before a later one is skipped, so the order stays 1-4. ``title`` is accepted for callers
        that pass it; the header text is always the standard one of DESIGN.md §6."""
        if not self.verbose:
            return
        for k in range(1, n + 1):
            if k not in self._phases_shown:
                self._phases_shown.add(k)
                if k == n:
                    self.print("")
                    self.console.print(Text(fmt.PHASE_HEADERS[k], style="bold cyan"))

    # -- one step ---------------------------------------------------------------------------
    def step_start(self, step: int, total_steps: int) -> None:
        self._phases_shown = set()
        self._groups = []
        self.console.rule(Text(f"Step {step}/{total_steps}"), characters="-")

    step_header = step_start

    def collecting(self, group_size: int, num_queries: int) -> None:
        self.phase(1)
        self.print(f"Collecting {group_size} rollouts for {num_queries} queries...")

    def groups(self, trajectories: Sequence[Trajectory], scenarios: Any = None, adv: Any = None) -> None:
        """Group the rollouts (kept flags from ``adv`` when given) and call :meth:`rollouts_done`."""
        views = group_views(trajectories, scenarios)
        if adv is not None:
            apply_advantage_stats(views, adv)
        self.rollouts_done(views)

    def rollouts_done(self, groups: Sequence[GroupView]) -> None:
        self._groups = list(groups)
        if self.verbose:
            self.phase(2)
            for g in groups:
                self.print(fmt.group_detail(g))
            for g in groups:
                if g.kept:
                    self.print(fmt.advantage_table(g))
        self.print(fmt.groups_line(groups))

    def micro_batching(self, num_micro_batches: int, token_budget: int | None = None,
                       batch_tokens: Sequence[int] | None = None) -> None:
        if self.verbose:
            self.phase(3)
            self.print(fmt.micro_batch_text(num_micro_batches, token_budget, batch_tokens))

    def backprop(self, update: Any) -> None:
        """Phase 4 from an ``UpdateStats``; concise mode prints only a skipped-update notice."""
        if self.verbose:
            self.phase(4)
        if self.verbose or getattr(update, "skipped", False):
            self.print(fmt.update_text(update))

    def optimization(self, metrics: TrainingMetrics, skip_reason: str | None = None) -> None:
        """Phase 4 from the step's metrics; concise mode prints only a skipped-update notice."""
        if self.verbose:
            self.phase(4)
        if self.verbose or metrics.skipped:
            self.print(fmt.optimization_text(metrics, skip_reason))

    def eta(self, metrics: TrainingMetrics) -> float | None:
        """Mean step time of this session's steps × steps left; None without a total."""
        if not metrics.total_steps or not self._step_times:
            return None
        return statistics.fmean(self._step_times) * max(metrics.total_steps - metrics.step, 0)

    def group_summary(self, metrics: TrainingMetrics, groups: Sequence[GroupView] | None = None) -> None:
        """Verbose only: the Group Summary (groups default to the ones of :meth:`rollouts_done`)."""
        if self.verbose:
            self.print("")
            self.print(fmt.group_summary_table(self._groups if groups is None else groups, metrics))

    def step_summary(self, metrics: TrainingMetrics, total_steps: int | None = None) -> None:
        if total_steps and not metrics.total_steps:
            metrics.total_steps = total_steps
        self._step_times.append(metrics.step_time)
        self.print(fmt.step_summary_text(metrics, self.eta(metrics)))

    def step_end(self, metrics: TrainingMetrics, groups: Sequence[GroupView] | None = None) -> None:
        self.group_summary(metrics, groups)
        self.step_summary(metrics)

    # -- evaluation -------------------------------------------------------------------------
    def eval_start(self, step: int, num_scenarios: int) -> None:
        self.print(f"Evaluating step {step} on {num_scenarios} scenarios...")

    def eval_report(self, stats: dict[str, Any], path: str | Path | None) -> None:
        """Print the Detailed Rubric Statistics, then ``Saved eval to <path>``."""
        self.print(rubric_table(stats))
        if path is not None:
            self.print(f"Saved eval to {path}")
