"""policy_update / sft_update: split invariance, non-finite skip, KL reference, scheduler stepping."""
import copy
import math

import pytest
import torch

from _grpo_util import make_traj, tiny_model
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.batching import make_micro_batches
from inboxrl.grpo.loss import token_logprobs
from inboxrl.grpo.optim import make_optimizer, make_scheduler
from inboxrl.grpo.update import UpdateSettings, policy_update, sft_update, trained_logprobs


def _batch():
    trajs = []
    for g in range(3):
        for i, r in enumerate([1.0, 0.0, -0.5, 0.3]):
            trajs.append(make_traj(g, r + 0.1 * g, [0.5 * (i % 2), -0.5 * (i // 2)], rollout_index=i,
                                   model_tokens_per_turn=2 + g, seed=1))
    assign_advantages(trajs, "masked")
    return trajs


def _step(model, trajs, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    settings = UpdateSettings(max_grad_norm=0.0, **kw)
    return policy_update(model, opt, None, trajs, settings, pad_id=0)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean", "constant"])
def test_split_invariance(agg):
    trajs = _batch()
    base = tiny_model(3)
    results = []
    for budget in (10_000, 60, 1):
        model = copy.deepcopy(base)
        stats = _step(model, trajs, aggregation=agg, token_budget=budget, constant_norm=16)
        results.append((stats, torch.cat([p.detach().flatten() for p in model.parameters()])))
    assert results[0][0].num_micro_batches == 1 and results[2][0].num_micro_batches == 12
    assert 1 < results[1][0].num_micro_batches < 12
    before = torch.cat([p.detach().flatten() for p in base.parameters()])
    assert (results[0][1] - before).abs().max() > 1e-4  # it did move
    for stats, params in results[1:]:
        assert (params - results[0][1]).abs().max().item() < 1e-5
        assert stats.loss == pytest.approx(results[0][0].loss, abs=1e-6)
        assert stats.grad_norm == pytest.approx(results[0][0].grad_norm, rel=1e-5)


def test_stats_and_filtered_tokens_not_trained():
    trajs = _batch()
    trajs[0].kept = False
    stats = _step(tiny_model(0), trajs)
    assert stats.trainable_tokens == sum(t.num_model_tokens for t in trajs[1:])
    assert stats.total_tokens == sum(t.num_tokens for t in trajs)
    assert 0.0 <= stats.clip_fraction <= 1.0 and stats.entropy > 0 and not stats.skipped
    assert stats.iterations == 1 and math.isfinite(stats.loss)


def test_non_finite_step_skipped_params_unchanged():
    trajs = _batch()
    trajs[2].turns[0].advantage = float("nan")
    model = tiny_model(0)
    before = copy.deepcopy(model.state_dict())
    opt = make_optimizer(model, lr=1e-2)
    sched = make_scheduler(opt, warmup_steps=0, total_steps=10, kind="linear")
    stats = policy_update(model, opt, sched, trajs, UpdateSettings(num_iterations=2), pad_id=0)
    assert stats.skipped and "non-finite" in stats.skip_reason and stats.iterations == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())
    assert not opt.state  # AdamW never stepped
    assert sched.last_epoch == 1  # scheduler steps once per training step, even when skipped


def test_empty_batch_skipped():
    trajs = _batch()
    for t in trajs:
        t.kept = False
    stats = _step(tiny_model(0), trajs)
    assert stats.skipped and stats.skip_reason == "no trainable tokens" and stats.num_micro_batches == 0


def test_num_iterations_and_scheduler_once():
    model = tiny_model(0)
    opt = make_optimizer(model, lr=1e-3)
    sched = make_scheduler(opt, warmup_steps=2, total_steps=10, kind="cosine")
    stats = policy_update(model, opt, sched, _batch(), UpdateSettings(num_iterations=3), pad_id=0)
    assert stats.iterations == 3 and not stats.skipped
    assert opt.state[next(iter(opt.state))]["step"].item() == 3
    assert sched.last_epoch == 1 and opt.param_groups[0]["lr"] == pytest.approx(0.5e-3)


def test_kl_zero_at_init_with_lora_adapter_disabled():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    opt = make_optimizer(model, lr=5e-2)
    settings = UpdateSettings(beta=0.1)
    first = policy_update(model, opt, None, _batch(), settings, pad_id=0)
    assert first.kl == pytest.approx(0.0, abs=1e-7)  # B = 0: the adapter is a no-op
    assert first.loss == pytest.approx(first.policy_loss, abs=1e-7)
    second = policy_update(model, opt, None, _batch(), settings, pad_id=0)
    assert second.kl > 1e-7  # the adapter moved the policy away from the base model
    # only LoRA parameters are trainable
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_full_finetune_kl_needs_ref_model():
    model = tiny_model(0)
    opt = make_optimizer(model, lr=1e-3)
    with pytest.raises(ValueError, match="ref_model"):
        policy_update(model, opt, None, _batch(), UpdateSettings(beta=0.1), pad_id=0)
    stats = policy_update(model, opt, None, _batch(), UpdateSettings(beta=0.1), pad_id=0,
                          ref_model=copy.deepcopy(model))
    assert stats.kl == pytest.approx(0.0, abs=1e-7)


def test_bf16_model_runs():
    model = tiny_model(0).to(torch.bfloat16)
    stats = _step(model, _batch())
    assert not stats.skipped and math.isfinite(stats.loss)


def test_sft_update_token_mean_nll_and_learns():
    trajs = _batch()
    trajs[0].kept = False  # SFT ignores `kept`
    model = tiny_model(0)
    mbs = make_micro_batches(trajs, 10_000, 0, require_kept=False)
    with torch.no_grad():
        lp = token_logprobs(model(input_ids=mbs[0].input_ids, attention_mask=mbs[0].attention_mask).logits,
                            mbs[0].target_ids)
    expected = -(lp * mbs[0].loss_mask).sum() / mbs[0].loss_mask.sum()
    opt = make_optimizer(model, lr=1e-2)
    settings = UpdateSettings(token_budget=50)
    first = sft_update(model, opt, None, trajs, settings)
    assert first.loss == pytest.approx(expected.item(), abs=1e-5)
    assert first.trainable_tokens == sum(t.num_model_tokens for t in trajs) and first.num_micro_batches > 1
    for _ in range(10):
        last = sft_update(model, opt, None, trajs, settings)
    assert last.loss < first.loss - 0.5


def test_settings_validation():
    with pytest.raises(ValueError):
        UpdateSettings(aggregation="mean")
    with pytest.raises(ValueError):
        UpdateSettings(num_iterations=0)


@pytest.mark.parametrize("lora", [False, True])
def test_selective_head_equals_full_logits(lora):
    model = tiny_model(2)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    mbs = make_micro_batches(_batch(), 10_000, 0)
    with torch.no_grad():
        logp, ent = trained_logprobs(model, mbs[0], temperature=0.9)
        logits = model(input_ids=mbs[0].input_ids, attention_mask=mbs[0].attention_mask).logits
        full = token_logprobs(logits, mbs[0].target_ids, temperature=0.9) * mbs[0].loss_mask
    assert torch.allclose(logp, full, atol=1e-5)
    assert ent.shape == (mbs[0].num_trainable,)
