"""Optimizer and learning-rate schedule for the trainer."""
from __future__ import annotations

import torch
from transformers import get_scheduler

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only (``requires_grad``; for LoRA: the adapter).

    Weight decay applies to matrices (``dim >= 2``); biases and norm scales (``dim < 2``) are not
    decayed. Raises ``ValueError`` when the model has no trainable parameter.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                   kind: str = "cosine") -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over ``warmup_steps`` then ``cosine`` / ``linear`` decay to 0 at ``total_steps``,
    or ``constant`` (after the warm-up). Built with ``transformers.get_scheduler``; step it once per
    training step."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {kind!r}")
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError("need warmup_steps >= 0 and total_steps >= 1")
    return get_scheduler(SCHEDULES[kind], optimizer, num_warmup_steps=warmup_steps,
                         num_training_steps=total_steps)
