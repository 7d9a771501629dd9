"""A LoRA GRPO checkpoint (adapter only) loads as its base model with the adapter merged, so
``inboxrl eval --init-from <checkpoint>`` and ``train --init-from`` accept it."""
from __future__ import annotations

import json

import pytest
import torch

from inboxrl.settings.sections import ModelConfig
from inboxrl.policy.hf import LoraSpec, load_model, make_tiny_model
from inboxrl.policy.loading import is_adapter_checkpoint
from inboxrl.run.model import load_policy


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    base, tok = make_tiny_model(seed=3)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    peft_model, _ = load_model(root / "base", dtype="fp32", device="cpu", lora=LoraSpec(r=4, alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh adapter is a no-op (B = 0): make it change the outputs
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(root / "checkpoint-0004")  # what save_checkpoint writes for LoRA
    return root, peft_model


def test_adapter_checkpoint_loads_merged_with_identical_logits(trained_adapter):
    root, peft_model = trained_adapter
    ckpt = root / "checkpoint-0004"
    assert is_adapter_checkpoint(ckpt) and not is_adapter_checkpoint(root / "base")
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(root / "base")
    merged, tok = load_model(ckpt, dtype="fp32", device="cpu")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    ids = torch.tensor([tok.encode("search the inbox for the budget")])
    base, _ = load_model(root / "base", dtype="fp32", device="cpu")
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        plain = base(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (plain - want).abs().max() > 1e-2  # the adapter mattered


def test_init_from_an_adapter_checkpoint_gives_a_fresh_lora_on_the_merged_model(trained_adapter):
    root, _ = trained_adapter
    cfg = ModelConfig(init_from=str(root / "checkpoint-0004"), dtype="fp32", lora_r=2, lora_alpha=4)
    policy = load_policy(cfg, device="cpu")
    names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert names and all("lora" in n for n in names)


def test_adapter_without_a_base_is_a_clear_error(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match="names no base model"):
        load_model(tmp_path, dtype="fp32", device="cpu")
