"""``inboxrl train`` / ``python train_grpo.py``: build a run from its settings and drive the loop.

Order: data → (optional warm start) → settings recorded (``config.json``, the same dict every
checkpoint records) → policy, optimizer, schedule, sinks → :class:`~inboxrl.grpo.trainer.GRPOTrainer`
(restore, then ``fit``: baseline eval at step 0, steps with an eval every ``eval_steps`` and a
checkpoint every ``save_steps``, a final eval). The best checkpoint (eval accuracy, ties by
reward) goes to ``{output_dir}/best``; ``--resume`` continues from the latest checkpoint.

Under ``torchrun`` (several processes, :mod:`inboxrl.parallel`) every rank runs this same code:
rank 0 prepares the data and the warm start first (the others then find them built), each rank
loads the policy on its own device, and only rank 0 prints (the other ranks' console is quiet)
and writes (``config.json``, metrics, wandb; the loop writes the rest on rank 0 only).
"""
from __future__ import annotations

import functools
import random
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from rich.console import Console

from inboxrl.agent.chat import ChatRenderer
from inboxrl.email.scenarios import save_ids
from inboxrl.grpo.checkpoint import read_state
from inboxrl.grpo.checkpoint_store import CheckpointStore
from inboxrl.grpo.optim import make_optimizer, make_scheduler
from inboxrl.grpo.state import TrainerState
from inboxrl.grpo.trainer import GRPOTrainer, TrainerSettings, check_world_size
from inboxrl.logs.console import ConsoleLog
from inboxrl.logs.sinks import MetricsSinks
from inboxrl.parallel import LOCAL, DistContext, init_from_env, shutdown
from inboxrl.parallel.fsdp import shard_model
from inboxrl.run import warm_start
from inboxrl.run.data import RunData, resolve_data
from inboxrl.run.env import make_env_factory, make_run_judge
from inboxrl.run.checks import (check_context_budget, check_fsdp, check_vllm, frozen_reference,
                                usable_output_dir)
from inboxrl.run.model import load_policy
from inboxrl.run.vllm import select_rollout_policy
from inboxrl.settings.resume import check_resume_settings
from inboxrl.settings.sections import Settings
from inboxrl.settings.base import ConfigError
from inboxrl.utils.atomic import atomic_write_json
from inboxrl.utils.run_lock import RunLockedError


T = TypeVar("T")


class NullSinks:
    """The metrics sinks of ranks other than 0: rank 0 alone writes metrics.jsonl and wandb."""

    def log_train(self, metrics: Any) -> None:
        pass

    def log_eval(self, stats: Any, step: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def main_first(ctx: DistContext, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, then on the other ranks (which find what rank 0 built: caches, models)."""
    if ctx.is_main:
        result = fn()
        ctx.barrier()
        return result
    ctx.barrier()
    return fn()


def seed_everything(seed: int) -> None:
    """Python, numpy and torch global RNGs (a checkpoint restores all three)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def with_warm_start(settings: Settings, data: RunData, console: ConsoleLog) -> Settings:
    """``settings`` with ``init_from`` set to the (cached) warm start when ``warm_start`` asks for one."""
    if not settings.loop.warm_start or settings.model.init_from:
        return settings
    # the step-0 baseline eval evaluates the warm-started model: no separate SFT eval
    sft_run = settings.replace(sft_eval="none") if settings.loop.run_baseline_eval else settings
    return settings.replace(init_from=str(warm_start.ensure_warm_start(sft_run, data, console)))


def trainer_settings(settings: Settings) -> TrainerSettings:
    s = settings
    return TrainerSettings(mode=s.run.mode, seed=s.run.seed, output_dir=Path(s.run.output_dir), grpo=s.grpo,
                           rollout=s.rollout, update=s.update, optim=s.optim, loop=s.loop, eval=s.eval,
                           recorded=s.flat())


def open_store(settings: Settings, console: ConsoleLog, main_process: bool, fresh: bool = True) -> CheckpointStore:
    """Take ``output_dir``'s lock (``ConfigError`` when another run holds it) and clean what a
    killed run left there (docs/robustness.md); rank 0 only (other ranks get a store that writes
    nothing). The other ranks read the output dir after rank 0's first barrier: cleaned.
    ``fresh`` (the run will not resume): an earlier run's checkpoints there are a ``ConfigError``
    unless ``overwrite_output_dir`` (which deletes that run's outputs)."""
    store = CheckpointStore(settings.run.output_dir, keep_last=settings.loop.keep_checkpoints,
                            main_process=main_process)
    try:
        notes = store.open(fresh=fresh, overwrite=settings.loop.overwrite_output_dir)
    except RunLockedError as e:
        raise ConfigError(str(e)) from None
    if store.overwritten:
        console.info(f"overwrite_output_dir: deleted the earlier run's {', '.join(store.overwritten)}")
    if notes:
        console.info(f"Cleaned up after an interrupted run: {'; '.join(notes[:4])}"
                     + (f" (+{len(notes) - 4} more)" if len(notes) > 4 else ""))
    return store


def build_trainer(settings: Settings, console: ConsoleLog, ctx: DistContext = LOCAL,
                  resume: bool = False, resume_from: str | None = None) -> GRPOTrainer:
    """The trainer of a run, its output directory checked and locked before any model is loaded.
    ``resume``: the run will resume (``restore`` with ``resume`` or ``resume_from``); otherwise an
    earlier run's checkpoints in ``output_dir`` stop it (:func:`open_store`). The checkpoint a
    resume will load must match the run's settings and process count: checked here too, before
    the model is loaded or ``config.json`` written."""
    if ctx.is_main:
        usable_output_dir(settings.run.output_dir)
    store = open_store(settings, console, ctx.is_main, fresh=not resume)
    try:
        return _build(settings, console, ctx, store, (resume_from or "") if resume else None)
    except BaseException:
        store.close()
        raise


def check_resumable(settings: Settings, store: CheckpointStore, ctx: DistContext, resume_from: str | None,
                    before_warm_start: bool = False) -> None:
    """``resume_from`` (``""``: the latest checkpoint; None: no resume) recorded these settings
    and this number of processes, else ``ConfigError`` (nothing loaded or written yet).
    ``before_warm_start``: ``init_from`` is not resolved yet (a warm start sets it), so it is
    left out; the rest is checked before the data is built and the warm start is trained."""
    if resume_from is None:
        return
    path = Path(resume_from) if resume_from else store.latest()
    if path is None or not path.exists():
        return  # restore says so (starting fresh, or resume_from does not exist)
    recorded, now = read_state(path), settings.flat()
    if before_warm_start:
        now.pop("init_from", None)
    check_resume_settings(now, recorded, str(path))
    check_world_size(recorded, ctx, path)


def _build(settings: Settings, console: ConsoleLog, ctx: DistContext, store: CheckpointStore,
           resume_from: str | None = None) -> GRPOTrainer:
    out = store.output_dir
    check_fsdp(settings)
    check_vllm(settings, ctx.world_size)
    ctx.barrier()  # rank 0 has cleaned the output dir (open_store): every rank reads the same checkpoints
    check_resumable(settings, store, ctx, resume_from, before_warm_start=True)
    seed_everything(settings.run.seed)
    data = main_first(ctx, lambda: resolve_data(settings.data, settings.run.seed))
    console.info(f"Data: {data.source}: {len(data.train)} train / {len(data.validation)} validation scenarios")
    settings = main_first(ctx, lambda: with_warm_start(settings, data, console))
    check_resumable(settings, store, ctx, resume_from)
    if ctx.is_main:
        save_ids(out / "validation_ids.json", data.validation)
        atomic_write_json(out / "config.json", settings.flat())
    model, optim, logging = settings.model, settings.optim, settings.logging
    policy = load_policy(model, device=ctx.device if ctx.distributed else None)
    if ctx.distributed:
        console.info(f"Data parallel: {ctx.world_size} processes ({ctx.device.type}); rank 0 writes the logs")
    console.info(f"Model: {model.init_from or model.model_name} ({policy.model.dtype}, "
                 f"{'LoRA r=%d' % model.lora_r if model.use_lora else 'full fine-tuning'})")
    renderer = policy.renderer or ChatRenderer(policy.tokenizer)
    check_context_budget(renderer, list(data.train) + list(data.validation), settings.rollout.max_context_tokens,
                         settings.rollout.max_tokens)
    # the KL reference: LoRA disables its adapter; full fine-tuning keeps the initial weights frozen
    ref_model = frozen_reference(policy.model) if settings.grpo.beta > 0 and not model.use_lora else None
    fsdp = shard_policy(policy, model, ctx, console)
    optimizer = make_optimizer(policy.model, lr=optim.learning_rate, weight_decay=optim.weight_decay)
    scheduler = make_scheduler(optimizer, warmup_steps=optim.warmup_steps, total_steps=max(optim.max_steps, 1),
                               kind=optim.lr_scheduler)
    # opened by the trainer once it knows the step it starts from (the files are rewound to it)
    sinks = (functools.partial(MetricsSinks, out, wandb_project=logging.wandb_project,
                               wandb_entity=logging.wandb_entity or None, wandb_name=logging.wandb_name or None,
                               wandb_mode=logging.wandb_mode, config=settings.flat(), notice=console.info)
             if ctx.is_main else lambda **_: NullSinks())
    judge = make_run_judge(settings.judge, out)  # closed with the run (GRPOTrainer.close)
    env_factory = make_env_factory(data.db_path, judge, settings.rollout.max_turns)
    rollout_policy = select_rollout_policy(settings, policy, out, console.info)
    return GRPOTrainer(trainer_settings(settings), policy, data.train, data.validation, env_factory,
                       optimizer, scheduler, console, sinks, store, ctx=ctx, ref_model=ref_model,
                       rollout_policy=rollout_policy, judge=judge, fsdp=fsdp)


def shard_policy(policy: Any, model: Any, ctx: DistContext, console: ConsoleLog) -> Any:
    """The FSDP root of ``policy.model`` sharded over the ranks when ``fsdp`` asks for it (before
    the optimizer is built: it holds the shards); None otherwise. One process: ignored, said so."""
    if not model.fsdp:
        return None
    if not ctx.distributed:
        console.info("FSDP: a single process has nothing to shard; training as one rank "
                     "(start several with torchrun --nproc_per_node N)")
        return None
    try:
        root = shard_model(policy.model, ctx)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    console.info(f"FSDP: parameters sharded over {ctx.world_size} ranks (one unit per decoder layer)")
    return root


def run_training(settings: Settings, resume: bool = False, resume_from: str | None = None,
                 fresh: bool = False) -> TrainerState:
    """One run, in this process or (under torchrun) as one rank of several. A rank that fails
    names itself on stderr and raises (torchrun then stops the other ranks; a rank left waiting
    for a dead peer fails after ``dist_timeout`` seconds)."""
    ctx = init_from_env(timeout_s=settings.loop.dist_timeout)
    quiet = None if ctx.is_main else Console(quiet=True)
    if not ctx.is_main:  # other ranks print only errors: no weight-loading progress bars either
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        resuming = bool(resume or resume_from) and not fresh
        trainer = build_trainer(settings, ConsoleLog(verbose=settings.run.verbose, console=quiet), ctx, resuming,
                                resume_from=resume_from)
        trainer.restore(resume, resume_from, fresh)
        state = trainer.fit()
    except BaseException as e:
        if ctx.distributed and not isinstance(e, ConfigError):  # the CLI reports a ConfigError once
            print(f"inboxrl: rank {ctx.rank} of {ctx.world_size} failed: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
        shutdown(ctx, clean=False)
        raise
    shutdown(ctx)
    return state
