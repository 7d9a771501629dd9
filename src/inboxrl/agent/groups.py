"""The one view of a rollout group: the G rollouts of one scenario, as advantages, metrics,
console and viewer see them.

A group's statistics are over its *judged* rollouts (a rollout whose judge failed has no
verdict and is left out, never scored as a model failure): ``reward_mean`` / ``reward_std``
of the outcome rewards and ``process_std`` of the per-turn process rewards, with the
population standard deviation (divide by n). ``kept`` says whether the group reaches the loss:
:func:`inboxrl.grpo.advantages.assign_advantages` sets it (low-variance groups are filtered);
a view built from saved trajectories takes it from their ``kept`` flags.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from inboxrl.agent.trajectory import Trajectory
from inboxrl.email.types import Scenario


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (``(0.0, 0.0)`` for an empty list)."""
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass
class GroupView:
    """One group: its rollouts (by ``rollout_index``), scenario when known, statistics, kept flag."""

    group_id: int
    trajectories: list[Trajectory]
    scenario: Scenario | None = None
    kept: bool = False
    reward_mean: float = 0.0
    reward_std: float = 0.0
    process_mean: float = 0.0
    process_std: float = 0.0

    @property
    def judged(self) -> list[Trajectory]:
        return [t for t in self.trajectories if t.rubric.judge_error is None]

    @property
    def size(self) -> int:
        return len(self.trajectories)

    @property
    def num_judge_errors(self) -> int:
        return self.size - len(self.judged)

    @property
    def scenario_id(self) -> str:
        if self.scenario is not None:
            return self.scenario.id
        return self.trajectories[0].scenario_id if self.trajectories else ""


def group_views(trajectories: Sequence[Trajectory],
                scenarios: Mapping[str, Scenario] | Sequence[Scenario] | None = None) -> list[GroupView]:
    """Group rollouts by ``group_id`` (ascending; rollouts by ``rollout_index``) with their statistics.

    ``kept`` is True when any rollout of the group is kept. ``scenarios`` (a dict by id or a list)
    supplies each group's question and reference answer; missing ones give ``scenario=None``.
    """
    if scenarios is not None and not isinstance(scenarios, Mapping):
        scenarios = {s.id: s for s in scenarios}
    by_group: dict[int, list[Trajectory]] = {}
    for t in trajectories:
        by_group.setdefault(t.group_id, []).append(t)
    views = []
    for gid in sorted(by_group):
        trajs = sorted(by_group[gid], key=lambda t: t.rollout_index)
        judged = [t for t in trajs if t.rubric.judge_error is None]
        r_mean, r_std = mean_std([float(t.reward) for t in judged])
        p_mean, p_std = mean_std([turn.process_reward for t in judged for turn in t.turns])
        scen = scenarios.get(trajs[0].scenario_id) if scenarios else None
        views.append(GroupView(gid, trajs, scen, any(t.kept for t in trajs), r_mean, r_std, p_mean, p_std))
    return views
