"""Rollouts of a step (or an eval) sharded over the ranks by whole groups.

:func:`sharded_rollouts` is :func:`inboxrl.agent.rollout.run_rollouts` for N ranks: the groups of
``requests`` are split into contiguous blocks (:func:`inboxrl.parallel.shard_range`), each rank
runs its block (its progress bar shown on rank 0 only), and every rank receives all the
trajectories, in request order. A rollout's seed comes from ``(settings.seed, group_id,
rollout_index)`` (:mod:`inboxrl.agent.sampling`), never from the rank, and a rollout's samples do
not depend on which other rollouts share its batch, so the step's trajectories are the same for
any N. Every rank then computes the same advantages and metrics from the same list; each trains
on its own groups (:func:`local_groups`) and rank 0 alone prints and writes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollout_batches
from inboxrl.agent.trajectory import Trajectory
from inboxrl.parallel import LOCAL, DistContext, shard_range


def _group_order(group_ids: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(group_ids))


def my_group_ids(group_ids: Sequence[int], ctx: DistContext) -> set[int]:
    """The groups (by id, in first-appearance order of ``group_ids``) that ``ctx``'s rank takes."""
    order = _group_order(group_ids)
    return {order[i] for i in shard_range(len(order), ctx.rank, ctx.world_size)}


def local_groups(trajectories: Sequence[Trajectory], ctx: DistContext = LOCAL) -> list[Trajectory]:
    """The trajectories of this rank's groups (all of them with one rank)."""
    if not ctx.distributed:
        return list(trajectories)
    mine = my_group_ids([t.group_id for t in trajectories], ctx)
    return [t for t in trajectories if t.group_id in mine]


def sharded_rollouts(policy: Any, requests: Sequence[RolloutRequest], env_factory: Callable,
                     settings: RolloutSettings, ctx: DistContext = LOCAL) -> list[Trajectory]:
    """Run this rank's groups of ``requests``; return every rank's trajectories in request order."""
    return sharded_rollout_batches(policy, [(requests, settings)], env_factory, ctx)[0]


def sharded_rollout_batches(policy: Any, batches: Sequence[tuple[Sequence[RolloutRequest], RolloutSettings]],
                            env_factory: Callable, ctx: DistContext = LOCAL) -> list[list[Trajectory]]:
    """:func:`sharded_rollouts` of several batches (a step's micro-batches) in one go: this rank's
    groups of each, decoded batch after batch with one judge wait at the end
    (:func:`inboxrl.agent.rollout.run_rollout_batches`), then one all-gather."""
    if not ctx.distributed:
        return run_rollout_batches(policy, batches, env_factory)
    local_batches = []
    for requests, settings in batches:
        mine = my_group_ids([r.group_id for r in requests], ctx)
        local_batches.append(([r for r in requests if r.group_id in mine],
                              dataclasses.replace(settings, progress=settings.progress and ctx.is_main)))
    done = [t for batch in run_rollout_batches(policy, local_batches, env_factory) for t in batch]
    by_key = {(t.group_id, t.rollout_index): t for shard in ctx.all_gather(done) for t in shard}
    everything = [r for requests, _ in batches for r in requests]
    missing = [(r.group_id, r.rollout_index) for r in everything if (r.group_id, r.rollout_index) not in by_key]
    if missing or len(by_key) != len(everything):
        raise RuntimeError(f"sharded rollouts: {len(everything)} requested, {len(by_key)} distinct "
                           f"gathered (missing {missing[:3]}); (group_id, rollout_index) must be unique")
    return [[by_key[(r.group_id, r.rollout_index)] for r in requests] for requests, _ in batches]
