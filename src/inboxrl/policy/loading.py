"""Load a causal LM and its tokenizer: a hub id, a local directory or a ``.gguf`` file.

``load_model`` is the one entry point the trainer, the evaluator and the CLI use. It resolves
the dtype (``"auto"`` picks bf16 only where bf16 matmuls are fast), strips the GGUF
quantization config that transformers attaches to de-quantised GGUF models (it marks them
untrainable and makes ``save_pretrained`` fail), optionally enables gradient checkpointing and
wraps the model in a peft LoRA adapter.
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from inboxrl.policy.default_model import resolve_model_name, strip_gguf_quantization

DTYPE_NAMES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass
class LoraSpec:
    """LoRA adapter settings, applied with ``peft.get_peft_model``.

    ``target_modules`` is ``"all-linear"`` (every linear layer except the output head) or an
    explicit list of module names such as ``["q_proj", "v_proj"]``.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"LoRA rank r must be positive, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise ValueError("target_modules must be 'all-linear' or a list of module names, "
                             f"got {self.target_modules!r}")


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (AVX512-BF16 or AMX-BF16)."""
    return any(flag in _cpu_flags() for flag in CPU_BF16_FLAGS)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` means CUDA when available, else CPU; anything else goes through ``torch.device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto",
                  device: str | torch.device | None = None) -> torch.dtype:
    """Map a dtype name to a ``torch.dtype``.

    ``"auto"``: bf16 on a CUDA device that supports it, bf16 on a CPU with AVX512-BF16/AMX-BF16,
    fp32 otherwise. Accepted names: ``bf16``/``bfloat16``, ``fp32``/``float32``,
    ``fp16``/``float16``/``half`` (or a ``torch.dtype``). Anything else raises ``ValueError``.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPE_NAMES.values():
            raise ValueError(f"unsupported dtype {dtype}; use bf16, fp32 or fp16")
        return dtype
    if not isinstance(dtype, str):
        raise ValueError(f"dtype must be a string or torch.dtype, got {type(dtype).__name__}")
    name = dtype.strip().lower()
    if name == "auto":
        dev = resolve_device(device)
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if dev.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp32 or fp16")
    return DTYPE_NAMES[name]


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give the tokenizer a pad token: the EOS token when it has none.

    The rollout engine builds its own (left-padded) tensors and masks, so the pad token only
    has to exist; it is never attended to. Raises ``ValueError`` when there is no EOS either.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _looks_like_path(name: str) -> bool:
    """True for names that cannot be a hub id (``org/name`` or ``name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _split_gguf(name: str) -> tuple[str, str | None]:
    """``(directory_or_id, gguf_file)``: a ``.gguf`` path becomes its parent and file name."""
    if name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(path.parent.resolve()), path.name
    return name, None


def is_adapter_checkpoint(path: str | os.PathLike) -> bool:
    """A directory holding only a LoRA adapter (``adapter_config.json``, no ``config.json``): what
    a GRPO checkpoint of a LoRA run saves."""
    p = Path(path).expanduser()
    return (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def _from_adapter_checkpoint(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """The base model the adapter names (``base_model_name_or_path``) with the adapter merged in,
    and the base's tokenizer."""
    import json

    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    if not base:
        raise ValueError(f"{path}/adapter_config.json names no base model (base_model_name_or_path)")
    model, tokenizer = _from_pretrained(str(resolve_model_name(base)), dtype)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload(), tokenizer


def _from_pretrained(name: str, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, gguf_file = _split_gguf(name)
    local = Path(source).expanduser()
    if not gguf_file and is_adapter_checkpoint(local):
        return _from_adapter_checkpoint(local, dtype)
    if local.is_dir():
        source = str(local)
    elif _looks_like_path(source):
        raise FileNotFoundError(f"model directory not found: {local}")
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError) as exc:  # ValueError: huggingface_hub's invalid-repo-id error
        detail = str(exc).strip().rstrip(".")
        raise OSError(f"could not load model {name!r}: {detail}. A hub id needs network access or "
                      "a local Hugging Face cache; a local path must be a model directory "
                      "or a .gguf file.") from exc
    if gguf_file:
        strip_gguf_quantization(model)
        if model.dtype != dtype:  # GGUF weights are de-quantised to fp32
            model = model.to(dtype)
    return model, tokenizer


def enable_activation_checkpointing(model: Any) -> None:
    """Turn on non-reentrant activation (gradient) checkpointing, under 5.x or 4.x names."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_lora(model: Any, lora: LoraSpec) -> Any:
    """Wrap ``model`` in a peft LoRA adapter; only the adapter's weights stay trainable."""
    from peft import LoraConfig, get_peft_model

    target: str | list[str] = lora.target_modules
    if not isinstance(target, str):
        target = list(target)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=target, bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft 0.21 still reads the deprecated 4.x property
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        return get_peft_model(model, config)


def load_model(name_or_path: str | os.PathLike, dtype: str | torch.dtype = "auto",
               device: str | torch.device | None = None, lora: LoraSpec | None = None,
               gradient_checkpointing: bool = False) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``.

    ``name_or_path``: ``"default"`` (the embedded SmolLM2-135M-Instruct, see
    ``default_model_dir``), a local model directory, a LoRA adapter directory such as a GRPO
    checkpoint (its base model, named in ``adapter_config.json``, with the adapter merged), a
    ``.gguf`` file, or a hub id (needs network access or the local Hugging Face cache).
    Guarantees: the model is on ``device`` (CUDA if available when ``None``) in the resolved
    dtype, in eval mode, with no quantization config; the tokenizer has a pad token (EOS when it
    had none). With ``gradient_checkpointing`` the non-reentrant variant is enabled. With ``lora`` the
    returned model is a ``peft.PeftModel`` whose only trainable parameters are the adapter's
    (``with model.disable_adapter():`` gives the base model). A missing local path raises
    ``FileNotFoundError``; a bad dtype ``ValueError``.
    """
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    model, tokenizer = _from_pretrained(resolve_model_name(str(name_or_path)), torch_dtype)
    ensure_pad_token(tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(dev)
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    if lora is not None:
        model = apply_lora(model, lora)
    model.eval()
    return model, tokenizer


def trainable_parameter_names(model: Any) -> list[str]:
    """Names of the parameters with ``requires_grad`` (useful to check a LoRA wrap)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


__all__: Sequence[str] = (
    "LoraSpec", "load_model", "is_adapter_checkpoint", "resolve_dtype", "resolve_device",
    "cpu_has_fast_bf16",
    "ensure_pad_token", "apply_lora", "trainable_parameter_names",
    "enable_activation_checkpointing",
)
