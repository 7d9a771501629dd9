"""Micro-batch packing: masks, shift alignment, budgets, determinism."""
import pytest
import torch

from _grpo_util import make_traj, tiny_model
from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.grpo.batching import make_micro_batches
from inboxrl.grpo.loss import token_logprobs


def _hand_traj(kept=True):
    t = Trajectory(scenario_id="x", kept=kept)
    t.append([5, 6, 7], "system")
    t.append([10, 11], "model", [-0.1, -0.2], turn=0)
    t.append([20, 21], "tool")
    t.append([12], "model", [-0.3], turn=1)
    t.turns = [Turn(0, advantage=1.5), Turn(1, advantage=-2.0)]
    return t


def test_masks_and_shift_alignment_by_hand():
    (mb,) = make_micro_batches([_hand_traj()], token_budget=100, pad_id=0)
    assert mb.input_ids.tolist() == [[5, 6, 7, 10, 11, 20, 21, 12]]
    # column i describes token i+1
    assert mb.target_ids.tolist() == [[6, 7, 10, 11, 20, 21, 12]]
    assert mb.loss_mask.tolist() == [[0, 0, 1, 1, 0, 0, 1]]
    assert mb.advantages.tolist() == [[0, 0, 1.5, 1.5, 0, 0, -2.0]]
    assert mb.old_logprobs[0].tolist() == pytest.approx([0, 0, -0.1, -0.2, 0, 0, -0.3])
    assert mb.seq_num_tokens.tolist() == [3.0] and mb.num_trainable == 3


def test_token_logprobs_alignment_matches_prefix_forward():
    model = tiny_model(0).eval()
    (mb,) = make_micro_batches([_hand_traj()], token_budget=100, pad_id=0)
    with torch.no_grad():
        lp = token_logprobs(model(input_ids=mb.input_ids).logits, mb.target_ids)
        ids = mb.input_ids[0]
        for i in range(len(ids) - 1):  # log p(token i+1 | tokens 0..i)
            ref = torch.log_softmax(model(input_ids=ids[None, : i + 1]).logits[0, -1], -1)[ids[i + 1]]
            assert lp[0, i].item() == pytest.approx(ref.item(), abs=1e-5)


def test_right_padding_and_only_model_tokens():
    a, b = _hand_traj(), make_traj(0, 1.0, [0.0, 0.0], rollout_index=1)
    b.turns[0].advantage, b.turns[1].advantage = 0.7, 0.3
    (mb,) = make_micro_batches([a, b], token_budget=1000, pad_id=-7 % 64)
    assert mb.num_rows == 2
    short = min(a.num_tokens, b.num_tokens)
    row = int(mb.seq_index.tolist().index(0 if a.num_tokens == short else 1))
    assert mb.attention_mask[row].tolist() == [1] * short + [0] * (mb.input_ids.shape[1] - short)
    assert (mb.input_ids[row, short:] == 57).all()
    assert mb.loss_mask[row, short - 1:].sum() == 0 and mb.advantages[row, short - 1:].abs().sum() == 0
    for r, idx in enumerate(mb.seq_index.tolist()):
        t = [a, b][idx]
        assert mb.loss_mask[r].sum() == t.num_model_tokens


def test_budget_packing_deterministic_and_complete():
    trajs = [make_traj(g, 1.0, [0.0] * (1 + g % 3), rollout_index=g) for g in range(9)]
    lengths = [t.num_tokens for t in trajs]
    budget = 40
    mbs = make_micro_batches(trajs, budget, pad_id=0)
    seen = sorted(i for mb in mbs for i in mb.seq_index.tolist())
    assert seen == list(range(9))
    for mb in mbs:
        assert mb.num_rows * mb.input_ids.shape[1] <= budget or mb.num_rows == 1
        assert mb.input_ids.shape[1] == max(lengths[i] for i in mb.seq_index.tolist())
    again = make_micro_batches(trajs, budget, pad_id=0)
    assert [m.seq_index.tolist() for m in mbs] == [m.seq_index.tolist() for m in again]
    # a sequence longer than the budget gets its own micro-batch
    solo = make_micro_batches(trajs, 5, pad_id=0)
    assert len(solo) == 9 and all(m.num_rows == 1 for m in solo)


def test_unkept_and_modelless_trajectories_dropped():
    no_model = Trajectory(scenario_id="y")
    no_model.append([1, 2, 3], "user")
    first_only = Trajectory(scenario_id="z", turns=[Turn(0)])
    first_only.append([4], "model", [-1.0], turn=0)  # token 0 has no context: not trainable
    mbs = make_micro_batches([_hand_traj(kept=False), no_model, first_only, _hand_traj()], 100, 0)
    assert len(mbs) == 1 and mbs[0].num_rows == 1
    assert len(make_micro_batches([_hand_traj(kept=False)], 100, 0, require_kept=False)) == 1


def test_inconsistent_trajectory_is_an_error():
    t = _hand_traj()
    t.logprobs.pop()
    with pytest.raises(ValueError, match="same length"):
        make_micro_batches([t], 100, 0)
    t = _hand_traj()
    t.turns.pop()
    with pytest.raises(ValueError, match="turn"):
        make_micro_batches([t], 100, 0)
    with pytest.raises(ValueError):
        make_micro_batches([_hand_traj()], 0, 0)


def test_pad_id_none_means_zero():
    a, b = _hand_traj(), make_traj(0, 1.0, [0.0, 0.0, 0.0], rollout_index=1)
    b.turns[0].advantage = 1.0
    (mb,) = make_micro_batches([a, b], 1000, None)
    row = mb.seq_index.tolist().index(0)  # the shorter hand-made one is padded
    assert mb.input_ids[row, a.num_tokens:].eq(0).all() and mb.input_ids.shape[1] > a.num_tokens
