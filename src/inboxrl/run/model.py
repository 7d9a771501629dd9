"""Load the policy a run trains: the base model (or a warm start), LoRA, the chat renderer."""
from __future__ import annotations

from pathlib import Path

from inboxrl.agent.chat import ChatRenderer
from inboxrl.email.tools import TOOL_SCHEMAS
from inboxrl.policy.default_model import resolve_model_name
from inboxrl.policy.hf import HFPolicy
from inboxrl.policy.loading import LoraSpec, load_model
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import ModelConfig


def model_source(cfg: ModelConfig) -> str:
    """The weights to start from: ``init_from`` when set (a warm start), else ``model_name``."""
    if cfg.init_from:
        p = Path(cfg.init_from)
        if not p.exists():
            raise ConfigError(f"init_from {p} does not exist")
        return str(p)
    return str(resolve_model_name(cfg.model_name))


def load_policy(cfg: ModelConfig, device: str | None = None, lora: LoraSpec | None | bool = True) -> HFPolicy:
    """An HFPolicy for ``cfg``: weights, a fresh LoRA adapter when ``cfg.use_lora`` (``lora=False``: none,
    e.g. for evaluation; a :class:`LoraSpec`: that one), tokenizer and renderer."""
    if lora is True:
        lora = LoraSpec(r=cfg.lora_r, alpha=cfg.lora_alpha) if cfg.use_lora else None
    try:
        model, tokenizer = load_model(model_source(cfg), dtype=cfg.dtype, device=device, lora=lora or None,
                                      gradient_checkpointing=cfg.gradient_checkpointing)
    except (OSError, ValueError) as e:
        raise ConfigError(f"could not load model {cfg.init_from or cfg.model_name!r}: {e}") from None
    renderer = ChatRenderer(tokenizer, TOOL_SCHEMAS)
    return HFPolicy(model=model, tokenizer=tokenizer, renderer=renderer, device=model.device)
