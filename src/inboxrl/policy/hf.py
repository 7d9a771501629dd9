"""Hugging Face transformers policies: model loading, the embedded default model, tiny test
models, and ``HFPolicy``, the holder the rollout engine samples from.

This module is the public face; the work lives in ``loading`` (``load_model``, dtypes, LoRA),
``default_model`` (the SmolLM2-135M GGUF converted once to safetensors) and ``tiny``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from inboxrl.policy.default_model import (
    DEFAULT_MODEL, DefaultModelError, cache_root, default_model_dir, find_default_gguf,
    resolve_model_name,
)
from inboxrl.policy.loading import (
    LoraSpec, apply_lora, cpu_has_fast_bf16, enable_activation_checkpointing, ensure_pad_token,
    load_model, resolve_device, resolve_dtype, strip_gguf_quantization, trainable_parameter_names,
)
from inboxrl.policy.tiny import default_tokenizer, make_tiny_model


@dataclass
class HFPolicy:
    """A transformers model, its tokenizer and the chat renderer the rollout engine uses.

    ``device`` defaults to the device of the model's first parameter.
    """

    model: Any
    tokenizer: Any
    renderer: Any = None
    device: torch.device | None = None

    def __post_init__(self) -> None:
        if self.device is None:
            try:
                self.device = next(self.model.parameters()).device
            except (StopIteration, AttributeError):
                self.device = torch.device("cpu")
        else:
            self.device = torch.device(self.device)

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_MODEL, renderer: Any = None,
             **load_kwargs: Any) -> "HFPolicy":
        """``load_model(name_or_path, **load_kwargs)`` wrapped in a policy."""
        model, tokenizer = load_model(name_or_path, **load_kwargs)
        return cls(model=model, tokenizer=tokenizer, renderer=renderer)


__all__ = [
    "DEFAULT_MODEL", "DefaultModelError", "HFPolicy", "LoraSpec", "apply_lora", "cache_root",
    "cpu_has_fast_bf16", "default_model_dir", "enable_activation_checkpointing", "ensure_pad_token", "default_tokenizer", "find_default_gguf",
    "load_model", "make_tiny_model", "resolve_device", "resolve_dtype", "resolve_model_name",
    "strip_gguf_quantization", "trainable_parameter_names",
]
