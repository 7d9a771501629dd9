"""Functions the multi-process tests run in each rank (spawned processes import this module)."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from _dist_util import rank_env
from _grpo_util import make_traj, tiny_model
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.grad_sync import GradSync
from inboxrl.grpo.update import UpdateSettings, policy_update
from inboxrl.parallel import LOCAL, init_from_env, shard_range, shutdown
from inboxrl.parallel.fsdp import shard_model
from inboxrl.policy.loading import enable_activation_checkpointing

CASES = ("token_mean", "seq_mean", "constant", "token_mean_idle_rank", "seq_mean_kl_idle_rank",
         "token_mean_checkpointing")


def case_trajectories(case: str) -> list:
    """Groups 0-1 short, groups 2-3 long (rank 1's share of 2 ranks has ~8x the tokens); the
    ``idle_rank`` cases have 3 groups and the last one (rank 1's only group) filtered out; ``kl``
    adds the KL term (beta > 0, a reference model) and two iterations; ``checkpointing`` runs the
    update under activation checkpointing."""
    trajs = []
    case = case.removesuffix("_checkpointing")
    groups = 3 if case.endswith("idle_rank") else 4
    for g in range(groups):
        long = g >= 2
        rewards = [0.5] * 4 if case.endswith("idle_rank") and g == 2 else [1.0, 0.0, -0.5, 0.3]
        for i, r in enumerate(rewards):
            turns = [0.5 * (i % 2), -0.5 * (i // 2), 0.2, 0.1] if long else [0.5 * (i % 2)]
            trajs.append(make_traj(g, r + 0.1 * g, turns, rollout_index=i, seed=2,
                                   model_tokens_per_turn=12 + 3 * i if long else 2 + i))
    assign_advantages(trajs, "rollout" if case.endswith("idle_rank") else "masked")
    return trajs


def my_groups(trajs: list, rank: int, world: int) -> list:
    ids = sorted({t.group_id for t in trajs})
    mine = {ids[i] for i in shard_range(len(ids), rank, world)}
    return [t for t in trajs if t.group_id in mine]


def _full_state(model, fsdp: bool) -> dict:
    if not fsdp:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))  # on every rank


def run_case(case: str, ctx=LOCAL, fsdp: bool = False) -> dict:
    """One update of a tiny model (SGD, clipping on, small budget: several micro-batches);
    ``fsdp``: the model sharded over ``ctx``'s ranks (FSDP2) instead of replicated (DDP)."""
    trajs = my_groups(case_trajectories(case), ctx.rank, ctx.world_size)
    model = tiny_model(5)
    if case.endswith("_checkpointing"):
        enable_activation_checkpointing(model)
        case = case.removesuffix("_checkpointing")
    before = copy.deepcopy(model.state_dict())
    sync = GradSync(ctx, fsdp=shard_model(model, ctx) if fsdp else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    agg = case.removesuffix("_idle_rank").removesuffix("_kl")
    kl = "_kl" in case
    settings = UpdateSettings(aggregation=agg, token_budget=96, max_grad_norm=0.5, constant_norm=32,
                              beta=0.1 if kl else 0.0, num_iterations=2 if kl else 1)
    ref = tiny_model(6) if kl else None
    stats = policy_update(model, opt, None, trajs, settings, pad_id=0, ref_model=ref, sync=sync)
    local = sum(p.to_local().numel() if fsdp else p.numel() for p in model.parameters())  # this rank's share
    return {"stats": stats.__dict__, "before": before, "after": _full_state(model, fsdp), "local_numel": local}


def one_rank_results() -> dict:
    return {case: run_case(case) for case in CASES}


def update_worker(rank: int, world: int, port: int, out: str, fsdp: bool = False) -> None:
    rank_env(rank, world, port)
    torch.set_num_threads(1)
    ctx = init_from_env(timeout_s=120, allow_cuda=False)
    try:
        results = {case: run_case(case, ctx, fsdp) for case in CASES}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        shutdown(ctx)


def timeout_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1 never joins the collective (it sleeps, then leaves); rank 0's all-reduce must fail
    after the group's timeout (2 s) instead of waiting for it."""
    import json
    import time

    rank_env(rank, world, port)
    ctx = init_from_env(timeout_s=2, allow_cuda=False)
    if rank == 1:
        time.sleep(6)
        return
    t0 = time.monotonic()
    try:
        ctx.all_reduce_sum([1.0])
        error = None
    except Exception as e:  # the timeout surfaces as a RuntimeError subclass (DistBackendError)
        error = f"{type(e).__name__}: {e}"
    (Path(out) / "timeout.json").write_text(json.dumps({"elapsed": time.monotonic() - t0, "error": error}))


def _rollout_requests() -> list:
    """Groups 0 and 1 (rank 0 of 2) and group 2 (rank 1): rank 0 decodes twice the rollouts."""
    from _rollout_util import scenario
    from inboxrl.agent.rollout import RolloutRequest

    return [RolloutRequest(scenario(g, "Where is it" + " really" * (2 * g) + "?"), g, j)
            for g in range(3) for j in range(2)]


def _rollouts(policy, sync, seed: int) -> list:
    from _rollout_util import FakeEnv
    from inboxrl.agent.rollout import RolloutSettings
    from inboxrl.grpo.sharding import sharded_rollouts

    settings = RolloutSettings(max_turns=2, max_new_tokens=10, max_context_tokens=1024, progress=False,
                               seed=seed, batch_size=1)
    with sync.full_weights():
        return sharded_rollouts(policy, _rollout_requests(), lambda sc: FakeEnv(sc, max_turns=2), settings,
                                sync.ctx)


def rollout_case(ctx=LOCAL, fsdp: bool = False) -> dict:
    """Rollouts, one update on them, rollouts again, on a tiny chat model (sharded with ``fsdp``):
    the sampled tokens and log-probs of both rounds, and how many forwards this rank ran."""
    from _rollout_util import SCHEMAS
    from inboxrl.agent.chat import ChatRenderer
    from inboxrl.grpo.sharding import local_groups
    from inboxrl.policy.hf import HFPolicy
    from inboxrl.policy.tiny import make_tiny_model

    model, tok = make_tiny_model(seed=0)
    policy = HFPolicy(model, tok, renderer=ChatRenderer(tok, SCHEMAS, few_shot=False))
    sync = GradSync(ctx, fsdp=shard_model(model, ctx) if fsdp else None)
    forwards = [0]
    model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    first = _rollouts(policy, sync, seed=3)
    for t in first:  # share of even sampled ids: groups with spread rewards
        ids = [i for i, s in zip(t.token_ids, t.sources) if s == "model"]
        t.reward = sum(i % 2 == 0 for i in ids) / max(len(ids), 1)
    assign_advantages(first, "rollout", min_group_std=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stats = policy_update(model, opt, None, local_groups(first, ctx), UpdateSettings(token_budget=256),
                          pad_id=tok.pad_token_id, sync=sync)
    second = _rollouts(policy, sync, seed=4)
    tokens = lambda ts: [(t.token_ids, t.logprobs) for t in ts]  # noqa: E731
    return {"first": tokens(first), "second": tokens(second), "forwards": forwards[0],
            "loss": stats.loss, "grad_norm": stats.grad_norm}


def rollout_worker(rank: int, world: int, port: int, out: str) -> None:
    rank_env(rank, world, port)
    torch.set_num_threads(1)
    ctx = init_from_env(timeout_s=120, allow_cuda=False)
    try:
        torch.save(rollout_case(ctx, fsdp=True), Path(out) / f"rollouts{rank}.pt")
    finally:
        shutdown(ctx)
