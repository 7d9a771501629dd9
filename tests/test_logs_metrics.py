"""TrainingMetrics: rollout-side fields, train/* names, flat round trip; reward_stats; groups."""
from __future__ import annotations

import math

import pytest

from _logs_util import make_traj
from inboxrl.logs.metrics import (GroupView, MovingAverage, TrainingMetrics, group_views,
                                  reward_stats)

DESIGN_TRAIN = ["loss", "policy_loss", "kl", "avg_reward", "median_reward", "std_reward",
                "min_reward", "max_reward", "accuracy", "groups_kept", "groups_filtered",
                "num_early_exit", "total_tokens", "trainable_tokens", "trainable_token_ratio",
                "grad_norm", "learning_rate", "entropy", "clip_fraction", "rollout_time",
                "training_time", "step_time", "tokens_per_second"]


def batch():
    # group 0 kept (rewards 1.0, -1.0), group 1 filtered (0.0, 0.0), group 2: one judge error
    return [
        make_traj("a", 1.0, group_id=0, rollout_index=1, correct=True, model_tokens=30, other_tokens=70),
        make_traj("a", -1.0, group_id=0, rollout_index=0, attempted=True, model_tokens=10, other_tokens=90),
        make_traj("b", 0.0, group_id=1, finish_reason="max_turns", kept=False, model_tokens=50, other_tokens=50),
        make_traj("b", 0.0, group_id=1, rollout_index=1, finish_reason="max_turns", kept=False,
                  model_tokens=5, other_tokens=95),
        make_traj("c", 1.2, group_id=2, correct=True, model_tokens=20, other_tokens=80),
        make_traj("c", 0.0, group_id=2, rollout_index=1, judge_error="http 500", kept=False,
                  model_tokens=8, other_tokens=92),
    ]


def test_reward_stats_population_std():
    rs = reward_stats([1.0, 2.0, 4.0, 5.0])
    assert (rs.mean, rs.median, rs.min, rs.max, rs.count) == (3.0, 3.0, 1.0, 5.0, 4)
    assert rs.std == pytest.approx(math.sqrt(2.5))
    assert reward_stats(batch()).max == 1.2
    with pytest.raises(ValueError):
        reward_stats([])


def test_from_rollouts_hand_computed():
    ma = MovingAverage(window=2)
    ma.push(0.5)
    m = TrainingMetrics.from_rollouts(4, batch(), total_steps=10, moving_average=ma,
                                      loss=0.25, grad_norm=1.5, step_time=2.0)
    # the judge-error rollout (placeholder reward 0.0) is left out of every reward statistic
    assert m.avg_reward == pytest.approx(1.2 / 5)
    assert m.median_reward == pytest.approx(0.0)
    assert m.std_reward == pytest.approx(math.sqrt((0.76**2 + 1.24**2 + 2 * 0.24**2 + 0.96**2) / 5))
    assert m.accuracy == pytest.approx(2 / 5)  # judge error left out
    assert m.judge_errors == 1 and m.extra["judge_error_reason"] == "http 500"
    assert (m.num_groups, m.groups_kept, m.groups_filtered) == (3, 2, 1)
    assert m.num_early_exit == 4 and m.num_rollouts == 6
    assert m.total_tokens == 600
    assert m.trainable_tokens == 30 + 10 + 20
    assert m.trainable_token_ratio == pytest.approx(60 / 600)
    assert m.reward_moving_avg == pytest.approx((0.5 + 0.24) / 2)
    m.finalize_timing()
    assert m.tokens_per_second == pytest.approx(300.0)
    with pytest.raises(TypeError, match="no field"):
        TrainingMetrics.from_rollouts(1, batch(), bogus=1)


def test_to_wandb_has_every_design_name_and_flat_roundtrip():
    m = TrainingMetrics.from_rollouts(3, batch(), total_steps=5, kl=float("nan"))
    m.extra["custom"] = 2.0
    w = m.to_wandb()
    for k in DESIGN_TRAIN:
        if k == "kl":
            continue  # NaN is not logged
        assert f"train/{k}" in w, k
    assert "train/kl" not in w and "train/step" not in w and w["train/custom"] == 2.0
    flat = m.to_flat()
    assert flat["kl"] is None and flat["step"] == 3 and flat["custom"] == 2.0
    back = TrainingMetrics.from_flat({"kind": "train", **flat})
    assert back.groups_kept == 2 and back.extra == {"custom": 2.0, "judge_error_reason": "http 500"}


def test_group_views_order_and_kept():
    gs = group_views(batch())
    assert [g.group_id for g in gs] == [0, 1, 2]
    assert [t.rollout_index for t in gs[0].trajectories] == [0, 1]
    assert [g.kept for g in gs] == [True, False, True]
    assert gs[0].reward_mean == 0.0 and gs[0].reward_std == pytest.approx(1.0)
    assert isinstance(gs[0], GroupView) and gs[0].scenario_id == "a"


def test_moving_average_window():
    ma = MovingAverage(3)
    assert math.isnan(ma.value)
    for v in (1, 2, 3, 4):
        ma.push(v)
    assert ma.value == pytest.approx(3.0)


def test_judge_errors_are_left_out_of_group_and_step_rewards():
    views = {g.group_id: g for g in group_views(batch())}
    assert views[2].reward_mean == pytest.approx(1.2) and views[2].reward_std == 0.0  # 1 judged of 2
    all_failed = [make_traj("d", 0.3, judge_error="timeout"), make_traj("d", 0.1, rollout_index=1,
                                                                        judge_error="timeout")]
    m = TrainingMetrics.from_rollouts(1, all_failed)
    assert math.isnan(m.avg_reward) and m.to_flat()["avg_reward"] is None and m.accuracy is None
    ma = MovingAverage(window=3)
    ma.push(0.5)
    assert ma.push(float("nan")) == 0.5  # a step with nothing judged does not poison the average
