"""Seeded, epoch-based scenario sampling with a resumable cursor.

Step ``s`` takes the scenarios at positions ``cursor .. cursor + B`` of an endless stream made
of one seeded permutation per epoch (epoch ``e`` uses ``Random(seed + e)``). The stream is a
pure function of (seed, cursor), so a run resumed from a checkpoint's cursor sees exactly
the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from inboxrl.email.types import Scenario


@dataclass
class ScenarioSampler:
    scenarios: Sequence[Scenario]
    seed: int
    cursor: int = 0

    def __post_init__(self) -> None:
        if not self.scenarios:
            raise ValueError("no training scenarios to sample from")

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.scenarios)))
        random.Random(self.seed + epoch).shuffle(order)
        return order

    def next_batch(self, size: int) -> list[Scenario]:
        """The next ``size`` scenarios of the stream; advances the cursor."""
        n = len(self.scenarios)
        out = []
        for pos in range(self.cursor, self.cursor + size):
            epoch, i = divmod(pos, n)
            out.append(self.scenarios[self._order(epoch)[i]])
        self.cursor += size
        return out

    @property
    def epoch(self) -> float:
        return self.cursor / len(self.scenarios)
