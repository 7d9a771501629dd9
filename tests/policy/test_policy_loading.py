"""load_model, dtype resolution, LoRA wrapping and the tiny test model."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from inboxrl.policy import loading
from inboxrl.policy.hf import HFPolicy
from inboxrl.policy.loading import load_model, LoraSpec, resolve_dtype, trainable_parameter_names
from inboxrl.policy.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random model saved as an ordinary transformers directory."""
    model, tokenizer = make_tiny_model(seed=3)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_resolve_dtype_explicit_names():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("BFloat16") is torch.bfloat16
    assert resolve_dtype("fp32") is torch.float32
    assert resolve_dtype("float16") is torch.float16
    assert resolve_dtype(torch.float32) is torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8")
    with pytest.raises(ValueError):
        resolve_dtype(torch.int64)


@pytest.mark.parametrize("flags,expected", [
    (frozenset({"avx2", "avx512_bf16"}), torch.bfloat16),
    (frozenset({"amx_bf16"}), torch.bfloat16),
    (frozenset({"avx2", "avx512f"}), torch.float32),
    (frozenset(), torch.float32),
])
def test_resolve_dtype_auto_on_cpu_follows_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(loading, "_cpu_flags", lambda: flags)
    assert resolve_dtype("auto", "cpu") is expected


def test_tiny_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, tok = make_tiny_model(seed=0)
    after = torch.rand(1)
    assert torch.equal(before, after)  # global RNG untouched
    b, _ = make_tiny_model(seed=0)
    c, _ = make_tiny_model(seed=1)
    ids = torch.tensor([tok.encode("Find the email about the Q3 budget.")])
    with torch.no_grad():
        la, lb, lc = a(ids).logits, b(ids).logits, c(ids).logits
    assert torch.equal(la, lb)
    assert not torch.allclose(la, lc)
    assert la.dtype is torch.float32 and la.shape == (1, ids.shape[1], len(tok))
    assert not a.training
    # the tiny config: 64 hidden, 2 layers, 4 heads of 16, 2 KV heads, tied 49152-token embedding
    cfg = a.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_key_value_heads) == (64, 2, 2)
    assert a.get_input_embeddings().weight.data_ptr() == a.get_output_embeddings().weight.data_ptr()
    assert cfg.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


def test_tiny_model_uses_real_chat_template():
    _, tok = make_tiny_model()
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_load_local_dir_dtype_and_pad(tiny_dir):
    model, tok = load_model(tiny_dir, dtype="fp32", device="cpu")
    ref, _ = make_tiny_model(seed=3)
    ids = torch.tensor([tok.encode("hello there")])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-6)
    assert tok.pad_token is not None and not model.training
    model16, _ = load_model(str(tiny_dir), dtype="bf16", device="cpu")
    assert model16.dtype is torch.bfloat16
    assert getattr(model16.config, "quantization_config", None) is None


def test_load_missing_paths_raise_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_model(tmp_path / "nope", dtype="fp32")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_model(str(tmp_path / "model.gguf"), dtype="fp32")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(tmp_path, dtype="fp8")


def test_uncached_hub_id_offline_raises_oserror(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="(?s)could not load model 'someorg/not-cached-model'.*hub id"):
        load_model("someorg/not-cached-model", dtype="fp32")


def test_pad_token_falls_back_to_eos(tiny_dir):
    _, tok = load_model(tiny_dir, dtype="fp32")
    tok.pad_token = None
    assert tok.pad_token is None
    loading.ensure_pad_token(tok)
    assert tok.pad_token == tok.eos_token


def test_lora_only_adapter_trainable_and_disable_gives_base(tiny_dir):
    model, tok = load_model(tiny_dir, dtype="fp32", lora=LoraSpec(r=4, alpha=8))
    names = trainable_parameter_names(model)
    assert names and all("lora_" in n for n in names)
    # per layer: q 4*64+64*4, k and v 4*64+32*4, o 4*64+64*4, gate/up 4*64+128*4, down 4*128+64*4
    per_layer = 512 + 384 + 384 + 512 + 768 + 768 + 768
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * per_layer
    base, _ = load_model(tiny_dir, dtype="fp32")
    ids = torch.tensor([tok.encode("search the inbox")])
    with torch.no_grad():
        base_logits = base(ids).logits
        assert torch.allclose(model(ids).logits, base_logits, atol=1e-6)  # B starts at zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
        adapted = model(ids).logits
        with model.disable_adapter():
            disabled = model(ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-3)
    assert torch.allclose(disabled, base_logits, atol=1e-6)


def test_lora_spec_validation_and_target_list(tiny_dir):
    with pytest.raises(ValueError):
        LoraSpec(r=0)
    with pytest.raises(ValueError):
        LoraSpec(target_modules="q_proj")
    model, _ = load_model(tiny_dir, dtype="fp32", lora=LoraSpec(r=2, target_modules=["q_proj"]))
    names = trainable_parameter_names(model)
    assert len(names) == 4 and all("q_proj.lora_" in n for n in names)  # A and B, 2 layers


def test_gradient_checkpointing_and_policy_holder(tiny_dir):
    model, tok = load_model(tiny_dir, dtype="fp32", gradient_checkpointing=True,
                            lora=LoraSpec(r=2))
    assert model.base_model.model.is_activation_checkpointing
    model.train()
    ids = torch.tensor([tok.encode("one two three four")])
    loss = model(ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    policy = HFPolicy(model=model, tokenizer=tok)
    assert policy.device == torch.device("cpu") and policy.renderer is None
