"""Sampler/trainer mismatch: its statistics, truncated importance weights, recomputed π_old, and
the update with and without the correction (hand-computed expectations)."""
import copy
import math
import statistics

import pytest
import torch

from _grpo_util import make_traj, tiny_model
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.batching import make_micro_batches
from inboxrl.grpo.forward import policy_logprobs
from inboxrl.grpo.loss import token_logprobs
from inboxrl.grpo.mismatch import mismatch_stats, tis_weights
from inboxrl.grpo.update import UpdateSettings, policy_update


def test_mismatch_stats_hand_computed():
    trainer = torch.tensor([[-1.0, -2.0, -0.5, -9.0]])
    sampler = torch.tensor([[-1.1, -1.8, -0.5, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is not trained: ignored
    st = mismatch_stats(trainer, sampler, mask)
    assert st.tokens == 3
    assert st.mismatch_kl == pytest.approx((-0.1 + 0.2 + 0.0) / 3)
    assert st.max_logprob_gap == pytest.approx(0.2)
    p_s = [math.exp(x) for x in (-1.1, -1.8, -0.5)]
    p_t = [math.exp(x) for x in (-1.0, -2.0, -0.5)]
    assert st.probs_corr == pytest.approx(statistics.correlation(p_s, p_t), abs=1e-6)
    same = mismatch_stats(trainer, trainer, mask)
    assert (same.mismatch_kl, same.max_logprob_gap, same.probs_corr) == (0.0, 0.0, 1.0)


def test_tis_weights_hand_computed():
    old = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    sampler = torch.tensor([[-1.0, -2.0, -0.5, -5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = tis_weights(old, sampler, mask, cap=2.0)
    assert w.tolist()[0] == pytest.approx([1.0, 2.0, math.exp(-0.5), 0.0])  # e^1 = 2.72 -> 2
    assert tis_weights(old, sampler, mask, cap=3.0)[0, 1].item() == pytest.approx(math.e)
    with pytest.raises(ValueError):
        tis_weights(old, sampler, mask, cap=0.0)
    with pytest.raises(ValueError):
        UpdateSettings(tis_cap=-1.0)


def _batch():
    trajs = [make_traj(g, r + 0.1 * g, [0.5 * (i % 2), -0.5], rollout_index=i, model_tokens_per_turn=3,
                       seed=2) for g in range(2) for i, r in enumerate([1.0, 0.0, -0.5])]
    assign_advantages(trajs, "masked")
    return trajs


def _trainer_logprobs(model, traj):
    """Log-probs of traj's tokens under one plain forward (position i scores token i)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([traj.token_ids])).logits
    lp = token_logprobs(logits, torch.tensor([traj.token_ids[1:]]))[0].tolist()
    return [0.0] + lp


def test_recomputed_old_logprobs_equal_a_fresh_forward():
    model, trajs = tiny_model(4), _batch()
    model.train()
    mbs = make_micro_batches(trajs, 40, 0)
    olds = policy_logprobs(model, mbs)
    assert model.training  # mode restored
    for mb, old in zip(mbs, olds):
        for row, idx in enumerate(mb.seq_index.tolist()):
            fresh = _trainer_logprobs(model, trajs[idx])
            for col in mb.loss_mask[row].nonzero()[:, 0].tolist():
                assert old[row, col].item() == pytest.approx(fresh[col + 1], abs=1e-5)


def _step(model, trajs, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    stats = policy_update(model, opt, None, trajs, UpdateSettings(max_grad_norm=0.0, **kw), pad_id=0)
    return stats, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_tis_with_sampler_equal_to_trainer_is_the_plain_update():
    base, trajs = tiny_model(5), _batch()
    for t in trajs:  # the sampler computed exactly what the trainer computes
        fresh = _trainer_logprobs(base, t)
        t.logprobs = [fresh[i] if s == "model" else 0.0 for i, s in enumerate(t.sources)]
    plain, p_plain = _step(copy.deepcopy(base), trajs)
    tis, p_tis = _step(copy.deepcopy(base), trajs, recompute_old_logprobs=True, tis_cap=2.0)
    assert (p_tis - p_plain).abs().max().item() < 1e-5
    assert tis.loss == pytest.approx(plain.loss, abs=1e-6)
    assert abs(tis.mismatch.mismatch_kl) < 1e-5 and tis.mismatch.max_logprob_gap < 1e-4
    mbs = make_micro_batches(trajs, 4096, 0)
    w = tis_weights(policy_logprobs(base, mbs)[0], mbs[0].old_logprobs, mbs[0].loss_mask, 2.0)
    sel = mbs[0].loss_mask > 0
    assert torch.allclose(w[sel], torch.ones_like(w[sel]), atol=1e-4)


def test_tis_update_with_a_known_mismatch_is_the_hand_computed_gradient():
    base, trajs = tiny_model(6), _batch()
    g = torch.Generator().manual_seed(0)
    fresh = {id(t): _trainer_logprobs(base, t) for t in trajs}
    for t in trajs:  # the sampler was off by up to ±1.5 nats per token
        t.logprobs = [fresh[id(t)][i] + float(torch.empty(1).uniform_(-1.5, 1.5, generator=g))
                      if s == "model" else 0.0 for i, s in enumerate(t.sources)]
    stats, got = _step(copy.deepcopy(base), trajs, recompute_old_logprobs=True, tis_cap=2.0)
    # by hand: at the first iteration ρ = 1 (no clip), so the loss gradient is that of
    # -Σ_tokens (1/T) · min(π_old/π_sampler, 2) · A · log π(token)
    ref = copy.deepcopy(base)
    ref.train()
    total_tokens = sum(t.num_model_tokens for t in trajs)
    loss = 0.0
    for t in trajs:
        logits = ref(input_ids=torch.tensor([t.token_ids])).logits
        lp = token_logprobs(logits, torch.tensor([t.token_ids[1:]]))[0]
        adv = t.token_advantages()
        for i, s in enumerate(t.sources):
            if s == "model":
                w = min(math.exp(fresh[id(t)][i] - t.logprobs[i]), 2.0)
                loss = loss - w * adv[i] * lp[i - 1] / total_tokens
    loss.backward()
    want = torch.cat([(p - p.grad).detach().flatten() for p in ref.parameters()])
    assert (got - want).abs().max().item() < 1e-5
    # the step measured the mismatch on the recomputed π_old: mean(log π_sampler - log π_old)
    gaps = [t.logprobs[i] - fresh[id(t)][i] for t in trajs for i, s in enumerate(t.sources) if s == "model"]
    assert stats.mismatch.mismatch_kl == pytest.approx(sum(gaps) / len(gaps), abs=1e-5)
    assert stats.mismatch.max_logprob_gap == pytest.approx(max(abs(x) for x in gaps), abs=1e-5)
    # without the correction (the default) the update differs
    _, plain = _step(copy.deepcopy(base), trajs)
    assert (plain - got).abs().max().item() > 1e-4


def test_off_is_the_default_update_and_still_measures():
    base, trajs = tiny_model(7), _batch()
    default, p_default = _step(copy.deepcopy(base), trajs)
    off, p_off = _step(copy.deepcopy(base), trajs, tis_cap=0.0)
    assert torch.equal(p_default, p_off) and default.loss == off.loss
    # measured from the first pass against the sampler's log-probs (here: make_traj's random ones)
    gaps = []
    for t in trajs:
        fresh = _trainer_logprobs(base, t)
        gaps += [t.logprobs[i] - fresh[i] for i, s in enumerate(t.sources) if s == "model"]
    assert default.mismatch.tokens == len(gaps)
    assert default.mismatch.mismatch_kl == pytest.approx(sum(gaps) / len(gaps), abs=1e-5)
    # recompute without TIS: π_old from the trainer, the ratio starts at exactly 1 -> no clipping
    rec, _ = _step(copy.deepcopy(base), trajs, recompute_old_logprobs=True, tis_cap=0.0)
    assert rec.clip_fraction == 0.0 and rec.mismatch.mismatch_kl == pytest.approx(default.mismatch.mismatch_kl, abs=1e-5)


def test_measure_mismatch_over_trajectories():
    from inboxrl.grpo.mismatch import measure_mismatch

    model, trajs = tiny_model(8), _batch()
    for t in trajs:  # a sampler that is uniformly 0.1 nats more confident than the trainer
        fresh = _trainer_logprobs(model, t)
        t.logprobs = [fresh[i] + 0.1 if s == "model" else 0.0 for i, s in enumerate(t.sources)]
    st, gaps = measure_mismatch(model, trajs, token_budget=30)
    assert st.tokens == len(gaps) == sum(t.num_model_tokens for t in trajs)
    assert st.mismatch_kl == pytest.approx(0.1, abs=1e-5) and st.max_logprob_gap == pytest.approx(0.1, abs=1e-5)
    assert torch.allclose(gaps, torch.full_like(gaps, 0.1), atol=1e-5)
