"""Multi-turn GRPO for the email agent.

For each step, B scenarios are drawn (seeded, epoch-based) and G rollouts of each are sampled
by the rollout engine (the same function evaluation uses, with sampling instead of greedy).
For a group of G rollouts of one scenario with outcome rewards R and per-turn process rewards r:

    Â_i   = (R_i - mean(R)) / (std(R) + 1e-6)
    r̃_i,t = (r_i,t - mean(r)) / (std(r) + 1e-6)        (over all turns of all rollouts in the group)
    A_i,t = Â_i + λ · Σ_{t' ≥ t} r̃_i,t'                  (λ = process_weight in masked mode, 0 in rollout mode)

Every token the model sampled in turn t of rollout i gets A_i,t; every other token (system,
user, tool results, template markup) has advantage 0 and loss mask 0. Groups with
std(R) < min_group_std (and, in masked mode, std(r) < min_group_std) are filtered.
The loss is the clipped surrogate with the sampling log-probs as π_old

    L = agg_tokens[ -min(ρ·A, clip(ρ, 1-ε_low, 1+ε_high)·A) ] + β · KL_k3(π ‖ π_ref),   ρ = exp(log π - log π_old)

aggregated by ``token_mean`` (default), ``seq_mean`` or ``constant``, accumulated over
micro-batches under a token budget, clipped, and applied with AdamW + warm-up/decay.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from inboxrl.agent.rollout import RolloutRequest, RolloutSettings
from inboxrl.agent.trajectory import Trajectory, save_jsonl
from inboxrl.config import TrainConfig
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.evaluation import EvalResult, evaluate
from inboxrl.grpo.grad_sync import GradSync
from inboxrl.grpo.sampler import ScenarioSampler
from inboxrl.grpo.sharding import local_groups, sharded_rollouts
from inboxrl.grpo.update import UpdateSettings, policy_update
from inboxrl.logs.metrics import TrainingMetrics, build_training_metrics
from inboxrl.parallel import LOCAL, DistContext


@dataclass
class TrainerState:
    """What a checkpoint must restore besides weights, optimizer, scheduler and RNG."""

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


@dataclass
class StepOutcome:
    metrics: TrainingMetrics
    trajectories: list[Trajectory]


class GRPOTrainer:
    """The training loop; rollouts, advantages, update and logs live in their own modules."""

    def __init__(self, cfg: TrainConfig, policy, train_scenarios, val_scenarios, env_factory: Callable,
                 optimizer, scheduler, console, sinks, checkpoints, ctx: DistContext = LOCAL) -> None:
        self.cfg, self.policy, self.env_factory = cfg, policy, env_factory
        self.val_scenarios = val_scenarios
        self.optimizer, self.scheduler = optimizer, scheduler
        self.console, self.sinks, self.checkpoints = console, sinks, checkpoints
        self.state = TrainerState()
        self.sampler = ScenarioSampler(train_scenarios, seed=cfg.seed)
        self.output_dir = Path(cfg.output_dir)
        self.ctx, self.sync = ctx, GradSync(ctx)  # the ranks of a data-parallel run (LOCAL: one)

    # -- one step ------------------------------------------------------------------------
    def rollout_settings(self, step: int, micro: int) -> RolloutSettings:
        cfg = self.cfg
        return RolloutSettings(max_turns=cfg.max_turns, max_new_tokens=cfg.max_tokens,
                               max_context_tokens=cfg.max_context_tokens, temperature=cfg.temperature,
                               top_p=cfg.top_p, greedy=False, seed=cfg.seed * 1_000_003 + step * 101 + micro,
                               check_template=cfg.check_template, batch_size=cfg.rollout_batch_size or None)

    def collect(self, step: int) -> tuple[list[Trajectory], list]:
        """PHASE 1: B x G rollouts (x gradient_accumulation_steps batches), one group per scenario."""
        cfg, trajectories, scenarios = self.cfg, [], []
        for micro in range(cfg.gradient_accumulation_steps):
            batch = self.sampler.next_batch(cfg.per_device_train_batch_size)
            base = len(scenarios)
            requests = [RolloutRequest(scenario=s, group_id=base + i, rollout_index=j)
                        for i, s in enumerate(batch) for j in range(cfg.num_generations)]
            scenarios += batch
            trajectories += sharded_rollouts(self.policy, requests, self.env_factory,
                                             self.rollout_settings(step, micro), self.ctx)
        return trajectories, scenarios

    def train_step(self, step: int) -> StepOutcome:
        cfg, log = self.cfg, self.console
        t0 = time.time()
        log.step_header(step, cfg.max_steps)
        log.phase(1, "ROLLOUT COLLECTION")
        log.collecting(cfg.num_generations, cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps)
        trajectories, scenarios = self.collect(step)
        rollout_time = time.time() - t0

        log.phase(2, "REWARDS & ADVANTAGES")
        adv = assign_advantages(trajectories, mode=cfg.mode, process_weight=cfg.process_weight,
                                min_group_std=cfg.min_group_std)
        log.groups(trajectories, scenarios, adv)

        log.phase(3, "MICRO-BATCHING")
        log.phase(4, "BACKPROPAGATION & OPTIMIZATION")
        t1 = time.time()
        upd = policy_update(self.policy.model, self.optimizer, self.scheduler, local_groups(trajectories, self.ctx),
                            self.update_settings(), pad_id=self.policy.tokenizer.pad_token_id, sync=self.sync)
        training_time = time.time() - t1
        self.state.skipped_steps += int(upd.skipped)
        log.backprop(upd)

        metrics = build_training_metrics(
            step=step, trajectories=trajectories, adv=adv, update=upd,
            learning_rate=self.optimizer.param_groups[0]["lr"], rollout_time=rollout_time,
            training_time=training_time, step_time=time.time() - t0,
            reward_history=self.state.reward_history, skipped_steps=self.state.skipped_steps)
        self.state.reward_history.append(metrics.avg_reward)
        log.group_summary(metrics)
        log.step_summary(metrics, cfg.max_steps)
        self.sinks.log_train(metrics)
        if self.ctx.is_main:
            save_jsonl(trajectories, self.output_dir / "trajectories" / f"step_{step:04d}.jsonl")
        return StepOutcome(metrics=metrics, trajectories=trajectories)

    def update_settings(self) -> UpdateSettings:
        cfg = self.cfg
        return UpdateSettings(num_iterations=cfg.num_iterations, epsilon_low=cfg.epsilon_low,
                              epsilon_high=cfg.epsilon_high, aggregation=cfg.loss_aggregation,
                              beta=cfg.beta, max_grad_norm=cfg.max_grad_norm, token_budget=cfg.token_budget,
                              constant_norm=cfg.max_tokens * cfg.max_turns, temperature=cfg.temperature,
                              share_prefix=cfg.share_prefix)

    # -- evaluation and stopping ----------------------------------------------------------
    def run_eval(self, step: int) -> EvalResult:
        result = evaluate(self.policy, self.val_scenarios, self.env_factory, self.cfg, step,
                          self.state.baseline, self.output_dir, ctx=self.ctx)
        self.state.last_eval_step = step
        self.console.eval_report(result.stats, result.path)
        self.sinks.log_eval(result.stats, step)
        return result

    def note_eval(self, step: int, result: EvalResult) -> bool:
        """Track the best eval (accuracy, ties by reward); True when this one is a new best."""
        s = self.state
        better = (result.accuracy, result.avg_reward) > (s.best_accuracy, s.best_reward)
        if better:
            s.best_accuracy, s.best_reward, s.best_step = result.accuracy, result.avg_reward, step
            s.evals_without_improvement = 0
        else:
            s.evals_without_improvement += 1
        return better

    def should_stop(self) -> str | None:
        s, cfg = self.state, self.cfg
        if s.best_accuracy >= cfg.target_accuracy:
            return f"target accuracy {cfg.target_accuracy:.2f} reached (best {s.best_accuracy:.3f})"
        if cfg.patience and s.evals_without_improvement >= cfg.patience:
            return f"no improvement in {cfg.patience} evals (patience)"
        return None
