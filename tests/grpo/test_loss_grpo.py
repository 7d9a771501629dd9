"""The clipped surrogate, the three aggregations by hand, KL k3, entropy."""
import math

import pytest
import torch

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.grpo.batching import make_micro_batches
from inboxrl.grpo.loss import (aggregation_weights, batch_totals, clipped_surrogate, grpo_loss, kl_k3,
                               logprobs_from_logits, token_entropy, token_logprobs)

V = 4


def _traj(turn_advs, tokens_per_turn):
    t = Trajectory(scenario_id="a")
    t.append([0], "system")
    for i, (adv, n) in enumerate(zip(turn_advs, tokens_per_turn)):
        t.append([1] * n, "model", [-math.log(V)] * n, turn=i)  # old log-prob = uniform
        t.turns.append(Turn(i, advantage=adv))
    return t


def _batch(budget=1000):
    # sequence 0: 2 tokens with A = 1, 1; sequence 1: 3 tokens with A = -1, -1, 2
    return make_micro_batches([_traj([1.0, 1.0], [1, 1]), _traj([-1.0, 2.0], [2, 1])], budget, 0)


@pytest.mark.parametrize("agg,expected", [("token_mean", -0.4), ("seq_mean", -0.5), ("constant", -0.25)])
def test_aggregations_by_hand(agg, expected):
    # uniform logits: logπ = logπ_old, ρ = 1, surrogate = -A per token
    # token_mean: -(1+1-1-1+2)/5; seq_mean: -((1+1)/2 + (-1-1+2)/3)/2; constant C=4: -(2+0)/(2*4)
    for budget in (1000, 4):  # one micro-batch, or one per sequence: same total
        mbs = _batch(budget)
        totals = batch_totals(mbs)
        assert totals.trainable_tokens == 5 and totals.num_sequences == 2
        total = 0.0
        for mb in mbs:
            w = aggregation_weights(mb, agg, totals, constant_norm=4)
            logits = torch.zeros(mb.num_rows, mb.input_ids.shape[1], V)
            total += grpo_loss(token_logprobs(logits, mb.target_ids), mb, w, 0.2, 0.28).loss.item()
        assert total == pytest.approx(expected, abs=1e-6)


def test_unknown_aggregation():
    mbs = _batch()
    with pytest.raises(ValueError):
        aggregation_weights(mbs[0], "sum", batch_totals(mbs))


def test_clipping_by_hand_and_zero_gradient_outside_range():
    # (log-ratio, A): expected loss, expected d loss / d logπ, clip active
    cases = [(0.5, 1.0, -1.28, 0.0, True),          # ρ=1.6487 > 1.28, A>0: clipped, no gradient
             (-0.5, -1.0, 0.8, 0.0, True),          # ρ=0.6065 < 0.8, A<0: clipped, no gradient
             (0.5, -1.0, math.exp(0.5), math.exp(0.5), False),    # ρ>1+ε, A<0: unclipped (pessimistic)
             (-0.5, 1.0, -math.exp(-0.5), -math.exp(-0.5), False),  # ρ<1-ε, A>0: unclipped
             (math.log(1.1), 2.0, -2.2, -2.2, False)]  # inside the range
    logp = torch.tensor([c[0] for c in cases], requires_grad=True)
    adv = torch.tensor([c[1] for c in cases])
    loss, active = clipped_surrogate(logp, torch.zeros(5), adv, torch.ones(5), 0.2, 0.28)
    loss.sum().backward()
    assert loss.tolist() == pytest.approx([c[2] for c in cases], abs=1e-6)
    assert logp.grad.tolist() == pytest.approx([c[3] for c in cases], abs=1e-6)
    assert active.tolist() == [float(c[4]) for c in cases]


def test_padding_cannot_overflow():
    logp = torch.tensor([-1.0, 0.0])
    old = torch.tensor([-1.0, -500.0])  # masked position with an absurd log-ratio
    loss, _ = clipped_surrogate(logp, old, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), 0.2, 0.28)
    assert torch.isfinite(loss).all()


def test_kl_k3_by_hand():
    logp = torch.tensor([-1.0, -2.0, -1.0])
    ref = torch.tensor([-1.0, -1.0, -3.0])
    k = kl_k3(logp, ref, torch.tensor([1.0, 1.0, 0.0]))
    assert k.tolist() == pytest.approx([0.0, math.e - 2.0, 0.0], abs=1e-6)  # r=1: e-1-1; masked: 0


def test_entropy_and_logprobs_fp32_from_bf16():
    logits = torch.zeros(1, 3, V, dtype=torch.bfloat16)
    ent = token_entropy(logits)
    assert ent.dtype == torch.float32 and ent[0].tolist() == pytest.approx([math.log(V)] * 2, abs=1e-6)
    lp = token_logprobs(logits, torch.tensor([[1, 2]]))
    assert lp.dtype == torch.float32 and lp.tolist()[0] == pytest.approx([-math.log(V)] * 2)
    # temperature divides the logits
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0, 0, 0, 0]]])
    lp2 = token_logprobs(logits, torch.tensor([[0]]), temperature=2.0)
    assert lp2.item() == pytest.approx(1 - math.log(math.e + 3), abs=1e-6)


def test_kl_metric_and_beta():
    mbs = _batch()
    totals = batch_totals(mbs)
    mb = mbs[0]
    w = aggregation_weights(mb, "token_mean", totals)
    logp = token_logprobs(torch.zeros(mb.num_rows, mb.input_ids.shape[1], V), mb.target_ids)
    ref = torch.full_like(mb.old_logprobs, -math.log(V) + 1.0)  # r = 1 everywhere
    parts = grpo_loss(logp, mb, w, 0.2, 0.28, beta=0.1, ref_logprobs=ref)
    assert parts.kl == pytest.approx(math.e - 2.0, abs=1e-5)
    assert parts.loss.item() == pytest.approx(parts.policy_loss + 0.1 * parts.kl, abs=1e-6)
    with pytest.raises(ValueError):
        grpo_loss(logp, mb, w, 0.2, 0.28, beta=0.1)


def test_logprobs_from_logits_matches_full_path():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.bfloat16)
    targets = torch.randint(0, 7, (2, 4))
    full = token_logprobs(logits, targets, temperature=0.7)
    ent = token_entropy(logits, temperature=0.7)
    lp, e = logprobs_from_logits(logits[:, :-1].reshape(-1, 7), targets.reshape(-1), temperature=0.7)
    assert lp.dtype == torch.float32
    assert torch.allclose(lp, full.reshape(-1), atol=1e-6) and torch.allclose(e, ent.reshape(-1), atol=1e-5)
