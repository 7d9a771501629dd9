"""``inboxrl train`` / ``python train_grpo.py``: build a run from its settings and drive the loop.

Order: data → (optional warm start) → settings recorded (``config.json``, the same dict every
checkpoint records) → policy, optimizer, schedule, sinks → :class:`~inboxrl.grpo.trainer.GRPOTrainer`
(restore, then ``fit``: baseline eval at step 0, steps with an eval every ``eval_steps`` and a
checkpoint every ``save_steps``, a final eval). The best checkpoint (eval accuracy, ties by
reward) goes to ``{output_dir}/best``; ``--resume`` continues from the latest checkpoint.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from inboxrl.email.scenarios import save_ids
from inboxrl.grpo.optim import make_optimizer, make_scheduler
from inboxrl.grpo.state import TrainerState
from inboxrl.grpo.trainer import GRPOTrainer, TrainerSettings
from inboxrl.logs.console import ConsoleLog
from inboxrl.logs.sinks import MetricsSinks
from inboxrl.run import warm_start
from inboxrl.run.data import RunData, resolve_data
from inboxrl.run.env import make_env_factory, make_run_judge
from inboxrl.run.model import load_policy
from inboxrl.settings.sections import Settings
from inboxrl.utils.atomic import atomic_write_json


def seed_everything(seed: int) -> None:
    random.seed(seed)
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


def build_trainer(settings: Settings, console: ConsoleLog) -> GRPOTrainer:
    out = Path(settings.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(settings.run.seed)
    data = resolve_data(settings.data, settings.run.seed)
    console.info(f"Data: {data.source}: {len(data.train)} train / {len(data.validation)} validation scenarios")
    save_ids(out / "validation_ids.json", data.validation)
    settings = with_warm_start(settings, data, console)
    atomic_write_json(out / "config.json", settings.flat())
    model, optim, logging = settings.model, settings.optim, settings.logging
    policy = load_policy(model)
    console.info(f"Model: {model.init_from or model.model_name} ({policy.model.dtype}, "
                 f"{'LoRA r=%d' % model.lora_r if model.use_lora else 'full fine-tuning'})")
    optimizer = make_optimizer(policy.model, lr=optim.learning_rate, weight_decay=optim.weight_decay)
    scheduler = make_scheduler(optimizer, warmup_steps=optim.warmup_steps, total_steps=max(optim.max_steps, 1),
                               kind=optim.lr_scheduler)
    sinks = MetricsSinks(out, wandb_project=logging.wandb_project, wandb_entity=logging.wandb_entity or None,
                         wandb_name=logging.wandb_name or None, wandb_mode=logging.wandb_mode,
                         config=settings.flat())
    env_factory = make_env_factory(data.db_path, make_run_judge(settings.judge, out), settings.rollout.max_turns)
    rollout_policy = None
    if settings.rollout.rollout_engine == "vllm":
        from inboxrl.run.vllm import vllm_rollout_policy

        rollout_policy = vllm_rollout_policy(settings, policy, out)
        console.info(f"Rollouts: vLLM ({settings.rollout.vllm_mode})")
    return GRPOTrainer(trainer_settings(settings), policy, data.train, data.validation, env_factory,
                       optimizer, scheduler, console, sinks, rollout_policy=rollout_policy)


def run_training(settings: Settings, resume: bool = False, resume_from: str | None = None,
                 fresh: bool = False) -> TrainerState:
    trainer = build_trainer(settings, ConsoleLog(verbose=settings.run.verbose))
    trainer.restore(resume, resume_from, fresh)
    return trainer.fit()
