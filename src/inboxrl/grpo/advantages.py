"""Group-normalised GRPO advantages with process supervision (DESIGN.md §5).

Per group of rollouts of one scenario (same ``group_id``):

- ``Â = (R - mean_g R) / (std_g R + 1e-6)`` for the outcome rewards ``R``;
- the process rewards of all turns of all rollouts of the group are normalised the same way
  (``r̃``), with the group's own turn-level mean and std;
- turn advantage ``A_t = Â + λ · Σ_{t' >= t} r̃_{t'}`` (the sum runs over the later turns of the
  same rollout); ``λ = process_weight`` in ``masked`` mode and ``0`` in ``rollout`` mode.

``std_g`` is the *population* standard deviation (``unbiased=False``, divide by ``n``), as in
DeepSeekMath's formula written as a plain std over the group; with ``n = 1`` it is 0.

Filtering: a group is dropped (``kept = False``, every advantage 0) when its outcome-reward std is
below ``min_group_std`` and, in ``masked`` mode, its process-reward std is below it too. A rollout
whose judge failed (``rubric.judge_error``) has no verdict: it is excluded from its group (``kept =
False``, advantages 0) and from the group's statistics.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from inboxrl.agent.trajectory import Trajectory

MODES = ("masked", "rollout")
EPS = 1e-6


@dataclass
class GroupStats:
    """What one group contributed (for the Group Summary and the logs)."""

    group_id: int
    size: int  # rollouts in the group, judge errors included
    num_judge_errors: int
    reward_mean: float
    reward_std: float
    process_std: float
    kept: bool


@dataclass
class AdvantageStats:
    """Totals over one batch of groups, plus each group's details in ``groups``."""

    groups_total: int = 0
    groups_kept: int = 0
    groups_filtered: int = 0
    rollouts_kept: int = 0
    rollouts_judge_error: int = 0
    groups: list[GroupStats] = field(default_factory=list)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (0.0, 0.0 for an empty list)."""
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return mean, math.sqrt(var)


def _zero(traj: Trajectory) -> None:
    traj.kept = False
    for turn in traj.turns:
        turn.advantage = 0.0


def _check(traj: Trajectory) -> None:
    if not math.isfinite(traj.reward):
        raise ValueError(f"trajectory {traj.scenario_id}/{traj.rollout_index}: non-finite reward {traj.reward}")
    for turn in traj.turns:
        if not math.isfinite(turn.process_reward):
            raise ValueError(f"trajectory {traj.scenario_id}/{traj.rollout_index}: non-finite process reward")


def _assign_group(group_id: int, members: list[Trajectory], lam: float, masked: bool,
                  min_group_std: float) -> GroupStats:
    valid = [t for t in members if t.rubric.judge_error is None]
    for t in members:
        if t.rubric.judge_error is not None:
            _zero(t)
    r_mean, r_std = _mean_std([t.reward for t in valid])
    p_mean, p_std = _mean_std([turn.process_reward for t in valid for turn in t.turns])
    low_signal = r_std < min_group_std and (not masked or p_std < min_group_std)
    kept = bool(valid) and not low_signal
    stats = GroupStats(group_id, len(members), len(members) - len(valid), r_mean, r_std, p_std, kept)
    if not kept:
        for t in valid:
            _zero(t)
        return stats
    for t in valid:
        t.kept = True
        outcome_adv = (t.reward - r_mean) / (r_std + EPS)
        suffix = 0.0
        for turn in reversed(t.turns):  # A_t = Â + λ Σ_{t' >= t} r̃_{t'}
            suffix += (turn.process_reward - p_mean) / (p_std + EPS)
            turn.advantage = outcome_adv + lam * suffix
    return stats


def assign_advantages(trajectories: Sequence[Trajectory], mode: str, process_weight: float = 0.5,
                      min_group_std: float = 0.05) -> AdvantageStats:
    """Set ``turn.advantage`` on every turn and ``kept`` on every trajectory, in place.

    Guarantees: every turn of every trajectory gets an advantage (0 for filtered groups and judge
    errors); ``kept`` is True exactly for rollouts of kept groups without a judge error; groups are
    reported in ascending ``group_id`` order. Raises ``ValueError`` for an unknown mode or a
    non-finite reward.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if min_group_std < 0:
        raise ValueError("min_group_std must be >= 0")
    masked = mode == "masked"
    lam = float(process_weight) if masked else 0.0
    groups: dict[int, list[Trajectory]] = defaultdict(list)
    for traj in trajectories:
        _check(traj)
        groups[traj.group_id].append(traj)
    stats = AdvantageStats()
    for gid in sorted(groups):
        g = _assign_group(gid, groups[gid], lam, masked, min_group_std)
        stats.groups.append(g)
        stats.groups_total += 1
        stats.groups_kept += int(g.kept)
        stats.groups_filtered += int(not g.kept)
        stats.rollouts_judge_error += g.num_judge_errors
        if g.kept:
            stats.rollouts_kept += g.size - g.num_judge_errors
    return stats
