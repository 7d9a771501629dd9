"""load_model on a .gguf file: de-quantised, quantization config stripped, trainable, saveable."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json

import pytest
import torch

from inboxrl.policy.default_model import default_model_dir, find_default_gguf
from inboxrl.policy.loading import load_model


@pytest.mark.slow
def test_load_gguf_matches_converted_dir_and_saves(tmp_path):
    gguf = find_default_gguf()
    model, tok = load_model(gguf, dtype="bf16", device="cpu")  # a Path works too
    assert model.dtype is torch.bfloat16
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert all(p.requires_grad for p in model.parameters())
    converted, _ = load_model(default_model_dir(), dtype="bf16", device="cpu")
    ids = torch.tensor([tok.encode("Who sent the budget email?")])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, converted(ids).logits)
    model.save_pretrained(tmp_path)  # fails while a GGUF quantizer is attached
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
