"""Deterministic sharding of a step's groups (or an eval's scenarios) over ranks.

Rank ``r`` of ``N`` takes one contiguous block of the ``n`` items, the first ``n mod N`` ranks one
item more; the blocks in rank order are the items in their original order, so gathering the ranks'
results and concatenating them in rank order (:func:`merge_shards`) restores the one-rank order.
A group never spans ranks. Which rank runs an item never changes what the item is: rollout seeds
come from (step, group, rollout index), not from the rank (:mod:`inboxrl.agent.sampling`).
"""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The indices of ``n`` items that ``rank`` of ``world_size`` takes (possibly empty)."""
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"bad shard request: n={n}, rank={rank}, world_size={world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def merge_shards(shards: Sequence[Sequence[T]]) -> list[T]:
    """The ranks' results (one list per rank, in rank order) as one list in the original order."""
    return [item for shard in shards for item in shard]
