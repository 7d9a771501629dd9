"""Group-normalised GRPO advantages with process supervision (docs/architecture.md, PHASE 2).

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
from dataclasses import dataclass, field
from typing import Sequence

from inboxrl.agent.groups import GroupView, group_views
from inboxrl.agent.trajectory import Trajectory

MODES = ("masked", "rollout")
EPS = 1e-6


@dataclass
class AdvantageStats:
    """Totals over one batch of groups, plus each group's view (statistics, ``kept``) in ``groups``."""

    groups_total: int = 0
    groups_kept: int = 0
    groups_filtered: int = 0
    rollouts_kept: int = 0
    rollouts_judge_error: int = 0
    groups: list[GroupView] = field(default_factory=list)


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


def _assign_group(g: GroupView, lam: float, masked: bool, min_group_std: float) -> None:
    """Set the advantages of one group's rollouts and the group's ``kept`` flag."""
    for t in g.trajectories:
        _zero(t)
    low_signal = g.reward_std < min_group_std and (not masked or g.process_std < min_group_std)
    g.kept = bool(g.judged) and not low_signal
    if not g.kept:
        return
    for t in g.judged:
        t.kept = True
        outcome_adv = (t.reward - g.reward_mean) / (g.reward_std + EPS)
        suffix = 0.0
        for turn in reversed(t.turns):  # A_t = Â + λ Σ_{t' >= t} r̃_{t'}
            suffix += (turn.process_reward - g.process_mean) / (g.process_std + EPS)
            turn.advantage = outcome_adv + lam * suffix


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
    for traj in trajectories:
        _check(traj)
    stats = AdvantageStats(groups=group_views(trajectories))
    for g in stats.groups:
        _assign_group(g, lam, masked, min_group_std)
        stats.groups_total += 1
        stats.groups_kept += int(g.kept)
        stats.groups_filtered += int(not g.kept)
        stats.rollouts_judge_error += g.num_judge_errors
        if g.kept:
            stats.rollouts_kept += len(g.judged)
    return stats
