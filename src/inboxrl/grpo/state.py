"""What a checkpoint must restore of the training loop besides weights, optimizer, scheduler and RNG."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TrainerState:
    """The loop's progress: step, data cursor, best eval, stopping counters, reward history, baseline."""

    step: int = 0
    cursor: int = 0
    best_accuracy: float = -1.0
    best_reward: float = -math.inf
    best_step: int = -1
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    last_eval_step: int = -1
    skipped_steps: int = 0
    reward_history: list[float] = field(default_factory=list)
    baseline: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainerState":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
