"""A tiny randomly initialised model with the real SmolLM2 tokenizer, for fast CPU tests.

The model is a ``LlamaForCausalLM`` (SmolLM2's architecture: grouped-query attention, tied
embeddings, RMSNorm, SiLU MLP) built from a config, so shapes, chat template, special tokens
and token ids are realistic while a forward pass costs milliseconds.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from inboxrl.policy.default_model import default_model_dir
from inboxrl.policy.loading import ensure_pad_token


@functools.lru_cache(maxsize=4)
def _load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(model_dir))


def default_tokenizer(cache_dir: str | None = None) -> Any:
    """The real SmolLM2-135M-Instruct tokenizer (converted default model), cached in-process.

    The same object is returned on every call: treat it as read-only.
    """
    return _load_tokenizer(str(default_model_dir(cache_dir)))


def tiny_config(tokenizer: Any, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                num_kv_heads: int = 2, intermediate_size: int = 128,
                max_position_embeddings: int = 4096) -> Any:
    """A ``LlamaConfig`` shaped like SmolLM2 but small, with the tokenizer's vocabulary and ids."""
    from transformers import LlamaConfig

    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads, max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="float32",
    )


def make_tiny_model(seed: int = 0, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                    num_kv_heads: int = 2, intermediate_size: int = 128,
                    max_position_embeddings: int = 4096,
                    tokenizer: Any | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a random fp32 ``LlamaForCausalLM`` in eval mode on the CPU.

    Identical weights for the same ``seed`` and sizes; the global torch RNG is left untouched.
    ``tokenizer`` defaults to the real SmolLM2 tokenizer (``default_tokenizer()``, shared).
    """
    from transformers import LlamaForCausalLM

    tokenizer = tokenizer if tokenizer is not None else default_tokenizer()
    config = tiny_config(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads,
                         intermediate_size, max_position_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.to(torch.float32)
    model.eval()
    return model, tokenizer
