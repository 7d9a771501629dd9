"""``HFPolicy``: a transformers model, its tokenizer and chat renderer, the holder the rollout
engine samples from. Loading lives in :mod:`inboxrl.policy.loading` (``load_model``, dtypes,
LoRA), the embedded default model in :mod:`inboxrl.policy.default_model`, tiny test models in
:mod:`inboxrl.policy.tiny`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


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
