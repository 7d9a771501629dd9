"""The shared-prefix forward (grpo/forward.py) gives the plain forward's log-probs and gradients."""
from __future__ import annotations

import copy

import pytest
import torch

from _grpo_util import VOCAB, tiny_model
from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.batching import make_micro_batches
from inboxrl.grpo.forward import MIN_SHARED_PREFIX, shared_prefix_len, trained_logprobs
from inboxrl.grpo.update import UpdateSettings, policy_update, sft_update

PREFIX = 40  # >= MIN_SHARED_PREFIX


def _traj(rollout: int, reward: float, prefix: list[int], seed: int) -> Trajectory:
    """A common system prefix, a per-row question, then two turns of model + tool tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(1, VOCAB, (n,), generator=g).tolist()  # noqa: E731
    t = Trajectory(scenario_id="s0", group_id=0, rollout_index=rollout, reward=reward)
    t.append(prefix, "system")
    t.append(ids(3 + rollout), "user")
    for i in range(2):
        n = 2 + (rollout + i) % 3
        t.append(ids(n), "model", (-0.4 - torch.rand(n, generator=g)).tolist(), turn=i)
        t.append(ids(2 + rollout % 2), "tool")
        t.turns.append(Turn(index=i, process_reward=0.3 * ((rollout + i) % 2)))
    return t


def _batch(n: int = 4) -> list[Trajectory]:
    prefix = torch.randint(1, VOCAB, (PREFIX,), generator=torch.Generator().manual_seed(7)).tolist()
    trajs = [_traj(i, r, prefix, seed=10 + i) for i, r in enumerate([1.0, 0.0, -0.5, 0.4][:n])]
    assign_advantages(trajs, "masked")
    return trajs


def test_prefix_length_rules():
    mb = make_micro_batches(_batch(), 10_000, 0)[0]
    # rows share the system prefix; the first question token differs per row (seeded ids)
    assert shared_prefix_len(mb) == PREFIX
    trimmed = copy.deepcopy(mb)
    trimmed.loss_mask[1, PREFIX - 5] = 1.0  # a trained target at token PREFIX-4: the prefix stops before it
    assert shared_prefix_len(trimmed) == PREFIX - 5
    trimmed.loss_mask[1, MIN_SHARED_PREFIX - 2] = 1.0
    assert shared_prefix_len(trimmed) == 0  # too short to be worth it
    one = make_micro_batches(_batch(1), 10_000, 0)[0]
    assert shared_prefix_len(one) == 0


def _lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"],
                                            init_lora_weights=False))


@pytest.mark.parametrize("lora", [False, True])
def test_same_logprobs_and_gradients_as_the_plain_forward(lora):
    mb = make_micro_batches(_batch(), 10_000, 0)[0]
    grads, logps = [], []
    for share in (False, True):
        torch.manual_seed(0)
        model = _lora(tiny_model(5)) if lora else tiny_model(5)
        logp, ent = trained_logprobs(model, mb, temperature=0.8, share_prefix=share)
        (logp * mb.advantages).sum().backward()
        logps.append((logp.detach(), ent))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(logps[0][0], logps[1][0], atol=1e-5)
    assert torch.allclose(logps[0][1], logps[1][1], atol=1e-4)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-5, rtol=1e-4), name
    if lora:  # the prefix's LoRA weights get gradient through the repeated cache
        assert any("k_proj.lora" in n and g.abs().sum() > 0 for n, g in grads[1].items())


@pytest.mark.parametrize("step", ["grpo", "sft"])
def test_updates_with_and_without_sharing_agree(step):
    params = []
    for share in (False, True):
        model = tiny_model(6)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        settings = UpdateSettings(max_grad_norm=0.0, share_prefix=share, token_budget=10_000)
        fn = policy_update if step == "grpo" else sft_update
        stats = fn(model, opt, None, _batch(), settings, pad_id=0)
        params.append((stats, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (a, pa), (b, pb) = params
    assert a.loss == pytest.approx(b.loss, abs=1e-6) and a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)
    assert (pa - pb).abs().max().item() < 1e-5


def test_the_shared_path_is_taken(monkeypatch):
    """Guards the equality tests above against a silent fall-back to the plain forward."""
    import inboxrl.grpo.forward as fw

    seen = []
    real = fw._prefix_cache
    monkeypatch.setattr(fw, "_prefix_cache", lambda d: seen.append(real(d)) or seen[-1])
    mb = make_micro_batches(_batch(), 10_000, 0)[0]
    trained_logprobs(tiny_model(0), mb)
    assert len(seen) == 1 and seen[0] is not None
    keys = seen[0].layers[0].keys  # the prefix once, repeated over the rows, then each row's rest
    assert keys.shape[0] == mb.num_rows and keys.shape[-2] == mb.input_ids.shape[1]


@pytest.mark.parametrize("lora", [False, True])
def test_activation_checkpointing_gives_the_plain_forward(lora):
    """Under activation checkpointing transformers drops a layer's KV cache in training, so the
    shared-prefix path would score each row's rest without its prefix: the forward must fall back
    to the plain pass there and still give the plain log-probs and gradients."""
    from inboxrl.policy.loading import enable_activation_checkpointing

    mb = make_micro_batches(_batch(), 10_000, 0)[0]
    grads, logps = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = _lora(tiny_model(5)) if lora else tiny_model(5)
        if checkpointing:
            enable_activation_checkpointing(model)
        model.train()
        logp, _ = trained_logprobs(model, mb, share_prefix=True)
        (logp * mb.advantages).sum().backward()
        logps.append(logp.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(logps[0], logps[1], atol=1e-5)
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-5, rtol=1e-4), name
