"""The training console log: concise by default, the four phases when verbose.

The trainer calls, per step, in this order::

    log.step_start(step, total_steps)
    log.collecting(group_size, num_queries)        # PHASE 1, then the rollout engine's tqdm bar
    log.groups(trajectories, scenarios, adv)       # PHASE 2: each group's rollouts and its
                                                   # Turn-by-Turn Advantage table (every group)
    log.micro_batching(update, token_budget)       # PHASE 3: the micro-batches the update made
    log.backprop(update)                           # PHASE 4
    log.group_summary(metrics); log.step_summary(metrics, total_steps)

and ``log.eval_report(stats, path)`` after each evaluation. Phase headers are printed only in
verbose mode, at most once per step and in order 1-4 (PHASE 3 only when the update made
micro-batches). The formatting lives in the pure functions of :mod:`inboxrl.logs.console_step`
and :mod:`inboxrl.logs.console_eval`.

Output is plain text when stdout is not a terminal (CI logs, files): rich then emits no ANSI
codes, and the width is fixed at 120 columns.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.text import Text

from inboxrl.agent.groups import GroupView, group_views
from inboxrl.agent.trajectory import Trajectory
from inboxrl.logs import console_step as fmt
from inboxrl.logs.console_eval import rubric_table
from inboxrl.logs.metrics import TrainingMetrics

WIDTH = 120


def make_console() -> Console:
    """A rich Console: the terminal's own width on a TTY, plain 120 columns otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=WIDTH)
    return console


class ConsoleLog:
    """Prints the step logs. ``verbose`` adds the phase headers, per-group rollouts, advantage
    tables, the micro-batches, the phase-4 block and the Group Summary."""

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

    def phase(self, n: int) -> None:
        """Verbose only: the ``STEP PHASE n: ...`` header, at most once per step, in order."""
        if self.verbose and n not in self._phases_shown and all(k < n for k in self._phases_shown):
            self._phases_shown.add(n)
            self.print("")
            self.console.print(Text(fmt.PHASE_HEADERS[n], style="bold cyan"))

    # -- one step ---------------------------------------------------------------------------
    def step_start(self, step: int, total_steps: int) -> None:
        self._phases_shown = set()
        self._groups = []
        self.console.rule(Text(f"Step {step}/{total_steps}"), characters="-")

    def collecting(self, group_size: int, num_queries: int) -> None:
        self.phase(1)
        self.print(f"Collecting {group_size} rollouts for {num_queries} queries...")

    def groups(self, trajectories: Sequence[Trajectory], scenarios: Any = None, adv: Any = None) -> None:
        """PHASE 2: each group's rollouts and Turn-by-Turn Advantage table (a filtered group's
        marked as such, with the zero advantages it got), then the one-line groups summary.

        The groups are ``adv.groups`` (the views :func:`~inboxrl.grpo.advantages.assign_advantages`
        filled) when ``adv`` is given, else built from the trajectories."""
        views = list(adv.groups) if adv is not None else group_views(trajectories)
        if scenarios is not None:
            by_id = scenarios if isinstance(scenarios, dict) else {s.id: s for s in scenarios}
            for g in views:
                g.scenario = g.scenario or by_id.get(g.trajectories[0].scenario_id)
        self._groups = views
        if self.verbose:
            self.phase(2)
            for g in views:
                self.print(fmt.group_detail(g))
            for g in views:
                self.print(fmt.advantage_table(g))
        self.print(fmt.groups_line(views))

    def micro_batching(self, update: Any, token_budget: int | None = None) -> None:
        """Verbose only: PHASE 3, the micro-batches the update made (none made: nothing printed)."""
        rows = list(getattr(update, "micro_batch_rows", None) or [])
        if self.verbose and rows:
            self.phase(3)
            self.print(fmt.micro_batch_text(rows, list(update.micro_batch_padded_tokens), token_budget))

    def backprop(self, update: Any) -> None:
        """PHASE 4 from an ``UpdateStats``; concise mode prints only a skipped-update notice."""
        self.phase(4)
        if self.verbose or getattr(update, "skipped", False):
            self.print(fmt.update_text(update))

    def eta(self, metrics: TrainingMetrics) -> float | None:
        """Mean step time of this session's steps × steps left; None without a total."""
        if not metrics.total_steps or not self._step_times:
            return None
        return statistics.fmean(self._step_times) * max(metrics.total_steps - metrics.step, 0)

    def group_summary(self, metrics: TrainingMetrics) -> None:
        """Verbose only: the Group Summary of the groups :meth:`groups` showed."""
        if self.verbose:
            self.print("")
            self.print(fmt.group_summary_table(self._groups, metrics))

    def step_summary(self, metrics: TrainingMetrics, total_steps: int | None = None) -> None:
        if total_steps and not metrics.total_steps:
            metrics.total_steps = total_steps
        self._step_times.append(metrics.step_time)
        self.print(fmt.step_summary_text(metrics, self.eta(metrics)))

    # -- evaluation -------------------------------------------------------------------------
    def eval_start(self, step: int, num_scenarios: int) -> None:
        self.print(f"Evaluating step {step} on {num_scenarios} scenarios...")

    def eval_report(self, stats: dict[str, Any], path: str | Path | None) -> None:
        """Print the Detailed Rubric Statistics, then ``Saved eval to <path>``."""
        self.print(rubric_table(stats))
        if path is not None:
            self.print(f"Saved eval to {path}")
