"""Hand-computed group advantages, filtering and judge-error exclusion."""
import math

import pytest

from _grpo_util import make_traj
from inboxrl.grpo.advantages import assign_advantages

STD_R = math.sqrt(2 / 3)  # population std of rewards [1, 0, -1]
A_HAT = 1.0 / (STD_R + 1e-6)  # 1.2247...
# process rewards [1, 1 | 0, -0.5 | -1]: mean 0.1, population std 0.8
R_TILDE = [v / 0.800001 for v in (0.9, 0.9, -0.1, -0.6, -1.1)]


def _group(gid=0, extra=()):
    trajs = [make_traj(gid, 1.0, [1.0, 1.0], rollout_index=0),
             make_traj(gid, 0.0, [0.0, -0.5], rollout_index=1),
             make_traj(gid, -1.0, [-1.0], rollout_index=2)]
    return trajs + list(extra)


def _adv(trajs):
    return [[t.advantage for t in tr.turns] for tr in trajs]


def test_masked_mode_hand_computed():
    trajs = _group()
    stats = assign_advantages(trajs, "masked", process_weight=0.5)
    expected = [[A_HAT + 0.5 * (R_TILDE[0] + R_TILDE[1]), A_HAT + 0.5 * R_TILDE[1]],
                [0.5 * (R_TILDE[2] + R_TILDE[3]), 0.5 * R_TILDE[3]],
                [-A_HAT + 0.5 * R_TILDE[4]]]
    for got, exp in zip(_adv(trajs), expected):
        assert got == pytest.approx(exp, abs=1e-6)
    # the literal numbers, worked by hand: 1.224744 + 0.5 * 2.25 = 2.349744
    assert trajs[0].turns[0].advantage == pytest.approx(2.349744, abs=1e-5)
    assert trajs[1].turns[0].advantage == pytest.approx(-0.4375, abs=1e-5)
    assert trajs[2].turns[0].advantage == pytest.approx(-1.912244, abs=1e-5)
    assert stats.groups_total == stats.groups_kept == 1 and stats.rollouts_kept == 3
    g = stats.groups[0]
    assert g.reward_mean == pytest.approx(0.0) and g.reward_std == pytest.approx(STD_R)
    assert g.process_std == pytest.approx(0.8) and g.kept
    assert all(t.kept for t in trajs)


def test_rollout_mode_ignores_process_rewards():
    trajs = _group()
    assign_advantages(trajs, "rollout", process_weight=0.5)
    assert _adv(trajs) == [pytest.approx([A_HAT, A_HAT]), pytest.approx([0.0, 0.0]), pytest.approx([-A_HAT])]


def test_token_advantages_follow_turns():
    trajs = _group()
    assign_advantages(trajs, "masked")
    t = trajs[0]
    per_token = t.token_advantages()
    for adv, src, turn in zip(per_token, t.sources, t.turn_index):
        assert adv == (t.turns[turn].advantage if src == "model" else 0.0)


def test_filtering_low_variance_groups():
    same_r_diff_p = [make_traj(1, 0.5, [1.0, 0.0], rollout_index=i) for i in range(3)]
    trajs = same_r_diff_p
    stats = assign_advantages(trajs, "rollout")
    assert stats.groups_filtered == 1 and stats.groups_kept == 0 and stats.rollouts_kept == 0
    assert not any(t.kept for t in trajs) and all(a == 0.0 for r in _adv(trajs) for a in r)
    # masked mode: the process rewards still carry signal -> kept; Â = 0, r̃ = ±1 (std 0.5)
    stats = assign_advantages(trajs, "masked", process_weight=0.5)
    assert stats.groups_kept == 1 and all(t.kept for t in trajs)
    assert _adv(trajs)[0] == pytest.approx([0.5 * (0.5 / 0.500001 - 0.5 / 0.500001), -0.5 * 0.5 / 0.500001])
    flat = [make_traj(2, 0.5, [0.0], rollout_index=i) for i in range(3)]
    assert assign_advantages(flat, "masked").groups_filtered == 1
    # std 0.0408 < 0.05 filtered; with min_group_std=0.04 kept
    near = [make_traj(3, r, [0.0], rollout_index=i) for i, r in enumerate([0.0, 0.1, 0.05])]
    assert assign_advantages(near, "rollout").groups_filtered == 1
    assert assign_advantages(near, "rollout", min_group_std=0.04).groups_kept == 1


def test_judge_error_excluded_from_group_and_stats():
    bad = make_traj(0, 5.0, [1.0, 1.0, 1.0], judge_error="timeout", rollout_index=3)
    trajs = _group(extra=[bad])
    stats = assign_advantages(trajs, "masked")
    assert trajs[0].turns[0].advantage == pytest.approx(2.349744, abs=1e-5)  # same as without it
    assert not bad.kept and all(t.advantage == 0.0 for t in bad.turns)
    assert stats.rollouts_kept == 3 and stats.rollouts_judge_error == 1
    assert stats.groups[0].size == 4 and stats.groups[0].num_judge_errors == 1


def test_several_groups_are_independent_and_sorted():
    trajs = _group(gid=7) + [make_traj(2, r, rollout_index=i) for i, r in enumerate([0.0, 1.0])]
    stats = assign_advantages(trajs, "rollout")
    assert [g.group_id for g in stats.groups] == [2, 7]
    assert trajs[3].turns[0].advantage == pytest.approx(-1.0, abs=1e-5)  # (0-0.5)/0.5
    assert trajs[0].turns[0].advantage == pytest.approx(A_HAT)


def test_bad_input():
    with pytest.raises(ValueError):
        assign_advantages(_group(), "bogus")
    with pytest.raises(ValueError):
        assign_advantages([make_traj(0, float("nan"))], "masked")
