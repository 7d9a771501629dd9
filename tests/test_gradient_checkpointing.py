"""``gradient_checkpointing`` (config): the policies GRPO and SFT train recompute their layers in the
backward pass, and the update's numbers are those of the plain run."""
from __future__ import annotations

import pytest
import torch

from inboxrl.grpo.update import UpdateSettings, policy_update
from inboxrl.policy.hf import make_tiny_model
from inboxrl.run.model import load_policy
from inboxrl.run.warm_start import load_sft_policy
from inboxrl.settings.sections import ModelConfig, SFTConfig
from test_forward_shared_prefix import _batch


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model, tok = make_tiny_model(seed=4)
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return root


def _checkpointed_layers(model) -> int:
    return sum(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def test_config_turns_it_on_for_grpo_and_sft(tiny_dir):
    on = ModelConfig(model_name=str(tiny_dir), dtype="fp32", gradient_checkpointing=True)
    off = ModelConfig(model_name=str(tiny_dir), dtype="fp32")
    assert not off.gradient_checkpointing
    assert _checkpointed_layers(load_policy(off, device="cpu").model) == 0
    n = _checkpointed_layers(load_policy(on, device="cpu").model)
    assert n > 0 and n == _checkpointed_layers(load_sft_policy(on, SFTConfig(), str(tiny_dir)).model)


def _update(tiny_dir, checkpointing: bool):
    cfg = ModelConfig(model_name=str(tiny_dir), dtype="fp32", lora_r=4, lora_alpha=8,
                      gradient_checkpointing=checkpointing)
    torch.manual_seed(0)
    model = load_policy(cfg, device="cpu").model
    with torch.no_grad():  # a fresh adapter is a no-op (B = 0): make it matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    layer = next(m for m in model.modules() if type(m).__name__.endswith("DecoderLayer"))
    calls = []
    # a pre-hook: the recompute stops early, once the last saved tensor is rebuilt
    layer.mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    stats = policy_update(model, opt, None, _batch(), UpdateSettings(max_grad_norm=0.0, token_budget=10_000,
                                                                    share_prefix=False),
                          pad_id=0)
    params = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    return stats, params, len(calls)


def test_update_is_the_plain_update_with_layers_recomputed(tiny_dir):
    plain, p_plain, calls_plain = _update(tiny_dir, False)
    ckpt, p_ckpt, calls_ckpt = _update(tiny_dir, True)
    assert ckpt.loss == pytest.approx(plain.loss, abs=1e-6)
    assert ckpt.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4) and plain.grad_norm > 0
    assert (p_ckpt - p_plain).abs().max().item() < 1e-5
    assert calls_plain == 1 and calls_ckpt == 2  # checkpointed: the forward, and its recompute in the backward
