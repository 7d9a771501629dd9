"""``inboxrl train`` / ``python train_grpo.py``: build a run from its config and drive the loop.

Order: data → policy → (optional warm start) → baseline eval (step 0) → steps, each followed by
an eval every ``eval_steps`` and a checkpoint every ``save_steps`` → a final eval unless the
last step was just evaluated. The best checkpoint (eval accuracy, ties by reward) goes to
``{output_dir}/best``; ``--resume`` continues from the latest checkpoint.

Under ``torchrun`` (several processes, :mod:`inboxrl.parallel`) every rank runs this same code:
rollouts and evals are sharded by group, the update is one global update, rank 0 alone prints and
writes (config, metrics, trajectories, eval files, checkpoints, ``best/``); a checkpoint records
the number of ranks and every rank's RNG state, and is resumed with the same number.
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from inboxrl.config import ConfigError, TrainConfig
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.eval_reference import judge_from_config
from inboxrl.email.scenarios import save_ids
from inboxrl.email.store import EmailStore
from inboxrl.grpo import checkpoint as ckpt
from inboxrl.grpo.optim import make_optimizer, make_scheduler
from inboxrl.grpo.trainer import GRPOTrainer, TrainerState
from inboxrl.logs.console import ConsoleLog
from inboxrl.logs.eval_stats import load_baseline, save_baseline
from inboxrl.logs.sinks import MetricsSinks
from inboxrl.parallel import LOCAL, DistContext, init_from_env, shutdown
from inboxrl.run.data import resolve_data
from inboxrl.run.model import load_policy
from inboxrl.run.resume_settings import SETTINGS_KEY, check_resume_settings, run_settings
from inboxrl.utils.atomic import atomic_write_json


def make_env_factory(db_path: Path, cfg: TrainConfig):
    store, judge = EmailStore(db_path), judge_from_config(cfg)
    return lambda scenario: EmailTaskEnv(store, scenario, judge, cfg.max_turns)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class NullSinks:
    """The metrics sinks of ranks other than 0: rank 0 alone writes metrics.jsonl and wandb."""

    def log_train(self, metrics) -> None:
        pass

    def log_eval(self, stats, step=None) -> None:
        pass

    def close(self) -> None:
        pass


def main_first(ctx: DistContext, fn):
    """``fn()`` on rank 0, then on the other ranks (they find what rank 0 built: caches, models)."""
    if ctx.is_main:
        result = fn()
        ctx.barrier()
        return result
    ctx.barrier()
    return fn()


def build_trainer(cfg: TrainConfig, console: ConsoleLog, ctx: DistContext = LOCAL) -> GRPOTrainer:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    data = main_first(ctx, lambda: resolve_data(cfg))
    console.info(f"Data: {data.source}: {len(data.train)} train / {len(data.validation)} validation scenarios")
    if ctx.is_main:
        save_ids(out / "validation_ids.json", data.validation)
        atomic_write_json(out / "config.json", asdict(cfg))
    if cfg.warm_start and not cfg.init_from:
        from inboxrl.sft.warm_start import ensure_warm_start

        # the step-0 baseline eval below evaluates the warm-started model: no separate SFT eval
        sft_cfg = dataclasses.replace(cfg, sft_eval="none") if cfg.run_baseline_eval else cfg
        cfg.init_from = str(main_first(ctx, lambda: ensure_warm_start(sft_cfg, data, console)))
    policy = load_policy(cfg, device=ctx.device if ctx.distributed else None)
    if ctx.distributed:
        console.info(f"Data parallel: {ctx.world_size} processes ({ctx.device.type}); rank 0 writes the logs")
    console.info(f"Model: {cfg.init_from or cfg.model_name} ({policy.model.dtype}, "
                 f"{'LoRA r=%d' % cfg.lora_r if cfg.use_lora else 'full fine-tuning'})")
    optimizer = make_optimizer(policy.model, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, warmup_steps=cfg.warmup_steps, total_steps=max(cfg.max_steps, 1),
                               kind=cfg.lr_scheduler)
    sinks = (MetricsSinks(out, wandb_project=cfg.wandb_project, wandb_entity=cfg.wandb_entity or None,
                          wandb_name=cfg.wandb_name or None, wandb_mode=cfg.wandb_mode, config=asdict(cfg))
             if ctx.is_main else NullSinks())
    return GRPOTrainer(cfg, policy, data.train, data.validation, make_env_factory(data.db_path, cfg),
                       optimizer, scheduler, console, sinks, checkpoints=out / "checkpoints", ctx=ctx)


def restore(trainer: GRPOTrainer, resume: bool, resume_from: str | None, fresh: bool) -> None:
    """Load the latest (``--resume``) or a given (``--resume-from``) checkpoint into the trainer."""
    if fresh or not (resume or resume_from):
        return
    path = Path(resume_from) if resume_from else ckpt.latest_checkpoint(trainer.checkpoints)
    if path is None:
        trainer.console.info("No checkpoint to resume from: starting fresh")
        return
    if not path.exists():
        raise ConfigError(f"resume_from {path} does not exist")
    recorded = ckpt.read_state(path)
    check_resume_settings(trainer.cfg, recorded, str(path))
    check_world_size(recorded, trainer.ctx, path)
    state = ckpt.load_checkpoint(path, trainer.policy.model, trainer.optimizer, trainer.scheduler)
    if trainer.ctx.distributed:
        ckpt.load_rank_rng(path, trainer.ctx.rank)
    trainer.state = TrainerState.from_dict(state)
    trainer.sampler.cursor = trainer.state.cursor
    trainer.console.info(f"Resumed from {path} at step {trainer.state.step}")


def baseline_eval(trainer: GRPOTrainer) -> None:
    """Step-0 eval of the untrained model (or the configured / saved baseline)."""
    cfg, out = trainer.cfg, Path(trainer.cfg.output_dir)
    saved = out / "eval_logs" / "baseline_eval.json"
    if trainer.state.baseline is not None:
        return
    if cfg.baseline_file:
        trainer.state.baseline = load_baseline(cfg.baseline_file)
    elif cfg.run_baseline_eval:
        result = trainer.run_eval(0)
        save_baseline(out, result.stats)
        trainer.note_eval(0, result)
        trainer.state.baseline = result.rewards_by_scenario()
    elif saved.exists():
        trainer.state.baseline = load_baseline(saved)
        trainer.console.info(f"Baseline: reusing {saved}")


def check_world_size(recorded: dict, ctx: DistContext, path: Path) -> None:
    """A checkpoint resumes with the number of processes that wrote it (each rank's RNG state)."""
    n = int(recorded.get(WORLD_SIZE_KEY, 1))
    if n != ctx.world_size:
        how = f"torchrun --nproc_per_node {n} ..." if n > 1 else "one process (python train_grpo.py ...)"
        raise ConfigError(f"checkpoint {path} was written by a run of {n} process(es), this run has "
                          f"{ctx.world_size}: resume it with {how}, or start a new run (--fresh)")


WORLD_SIZE_KEY = "world_size"


def save(trainer: GRPOTrainer, step: int, best: bool) -> None:
    """Checkpoint (and ``best/``) from rank 0, with every rank's RNG state; a collective."""
    s, ctx = trainer.state, trainer.ctx
    s.step, s.cursor = step, trainer.sampler.cursor
    rank_rng = ctx.all_gather(ckpt.rng_state()) if ctx.distributed else None
    if not ctx.is_main:
        if best:
            s.best_checkpoint = str(trainer.checkpoints.parent / ckpt.BEST)
        return
    extra = {SETTINGS_KEY: run_settings(trainer.cfg), WORLD_SIZE_KEY: ctx.world_size}
    path = ckpt.save_checkpoint(trainer.checkpoints, step, trainer.policy.model, trainer.optimizer,
                                trainer.scheduler, dict(s.to_dict(), **extra),
                                keep_last=trainer.cfg.keep_checkpoints, rank_rng=rank_rng)
    if best:
        s.best_checkpoint = str(ckpt.save_best(trainer.checkpoints.parent, path))  # -> {output_dir}/best
        trainer.policy.tokenizer.save_pretrained(s.best_checkpoint)


def fit(trainer: GRPOTrainer, until_step: int | None = None) -> TrainerState:
    """The loop: steps, periodic evals and checkpoints, early stopping, a final eval.

    ``until_step`` stops after that step as an interrupted run would (tests of resume use it);
    the schedule still spans ``max_steps``.
    """
    cfg, s = trainer.cfg, trainer.state
    baseline_eval(trainer)
    last = min(cfg.max_steps, until_step or cfg.max_steps)
    for step in range(s.step + 1, last + 1):
        trainer.train_step(step)
        s.step, s.cursor = step, trainer.sampler.cursor
        best = False
        if cfg.eval_steps and step % cfg.eval_steps == 0:
            best = trainer.note_eval(step, trainer.run_eval(step))
        if best or (cfg.save_steps and step % cfg.save_steps == 0) or step == last:
            save(trainer, step, best)
        reason = trainer.should_stop()
        if reason:
            trainer.console.info(f"Stopping early at step {step}: {reason}")
            break
    if s.step >= 1 and s.last_eval_step != s.step:
        if trainer.note_eval(s.step, trainer.run_eval(s.step)):
            save(trainer, s.step, True)
    trainer.console.info(f"Best eval accuracy {max(s.best_accuracy, 0):.3f} at step {s.best_step}; "
                         f"outputs in {cfg.output_dir}")
    trainer.sinks.close()
    if trainer.ctx.is_main:
        atomic_write_json(Path(cfg.output_dir) / "trainer_state.json", s.to_dict())
    return s


def run_training(cfg: TrainConfig, resume: bool = False, resume_from: str | None = None,
                 fresh: bool = False) -> TrainerState:
    """One run, in this process or (under torchrun) as one rank of several; a rank that fails
    names itself on stderr and raises (torchrun then stops the other ranks; a rank left waiting
    on a dead peer fails after ``dist_timeout`` seconds)."""
    ctx = init_from_env(timeout_s=cfg.dist_timeout)
    from rich.console import Console

    console = ConsoleLog(verbose=cfg.verbose, console=None if ctx.is_main else Console(quiet=True))
    try:
        trainer = build_trainer(cfg, console, ctx)
        restore(trainer, resume, resume_from, fresh)
        state = fit(trainer)
    except BaseException as e:
        if ctx.distributed:
            print(f"inboxrl: rank {ctx.rank} of {ctx.world_size} failed: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
        shutdown(ctx, clean=False)
        raise
    shutdown(ctx)
    return state


def summary_json(state: TrainerState) -> str:
    return json.dumps({k: v for k, v in state.to_dict().items() if k != "reward_history"})
