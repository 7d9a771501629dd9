"""Multi-turn GRPO for the email agent: the training loop, top to bottom.

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

:class:`GRPOTrainer` is the whole loop: :meth:`~GRPOTrainer.restore` (``--resume``),
:meth:`~GRPOTrainer.fit` (baseline eval, then each step: rollout, advantages, update, logs,
eval, checkpoint; early stopping; a final eval), with the rules themselves in their own modules
(:mod:`~inboxrl.grpo.advantages`, :mod:`~inboxrl.grpo.update`, :mod:`~inboxrl.logs.metrics`).

With several ranks (``ctx``, :mod:`inboxrl.parallel`) every rank runs this same loop: rollouts and
evals are sharded by group (:mod:`~inboxrl.grpo.sharding`), every rank sees all trajectories and
takes the same decisions, the update is one global update (:mod:`~inboxrl.grpo.grad_sync`), and
rank 0 alone writes files (its console and sinks are the only live ones). A checkpoint records the
number of ranks and every rank's RNG state; it resumes with the same number. With FSDP
(``fsdp``: the parameters sharded) rollouts and evals run on the unsharded model
(:meth:`GradSync.full_weights <inboxrl.grpo.grad_sync.GradSync.full_weights>`) and a checkpoint
gathers the whole weights and optimizer state to rank 0 in the one-rank format.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from inboxrl.agent.rollout import RolloutRequest, RolloutSettings
from inboxrl.agent.trajectory import Trajectory, save_jsonl
from inboxrl.email.judge_pool import close_judge
from inboxrl.grpo import checkpoint as ckpt
from inboxrl.grpo.checkpoint_fsdp import gather_full_state, load_full_state
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.checkpoint_store import CheckpointStore
from inboxrl.grpo.evaluation import EvalResult, eval_settings, evaluate
from inboxrl.grpo.grad_sync import GradSync
from inboxrl.grpo.sampler import ScenarioSampler
from inboxrl.grpo.sharding import local_groups, sharded_rollout_batches
from inboxrl.grpo.state import TrainerState
from inboxrl.grpo.update import UpdateSettings, policy_update
from inboxrl.logs.eval_stats import load_baseline, save_baseline
from inboxrl.logs.metrics import TrainingMetrics, build_training_metrics
from inboxrl.parallel import LOCAL, DistContext
from inboxrl.settings.base import ConfigError
from inboxrl.settings.resume import SETTINGS_KEY, check_resume_settings
from inboxrl.settings.sections import (EvalConfig, GRPOConfig, LoopConfig, OptimConfig, RolloutConfig,
                                       UpdateConfig)
from inboxrl.utils.atomic import atomic_write_json
from inboxrl.utils.faults import fault_point

WORLD_SIZE_KEY = "world_size"  # the number of ranks, in each checkpoint's trainer state


def check_world_size(recorded: Mapping[str, Any], ctx: DistContext, path: Path) -> None:
    """A checkpoint resumes with the number of processes that wrote it (each rank's RNG state)."""
    n = int(recorded.get(WORLD_SIZE_KEY, 1))
    if n != ctx.world_size:
        how = f"torchrun --nproc_per_node {n} ..." if n > 1 else "one process (python train_grpo.py ...)"
        raise ConfigError(f"checkpoint {path} was written by a run of {n} process(es), this run has "
                          f"{ctx.world_size}: resume it with {how}, or start a new run (a new --output-dir or "
                          "--overwrite-output-dir)", same_on_every_rank=True)


@dataclass(frozen=True)
class TrainerSettings:
    """The sections the loop reads, and the run's settings as ``config.json`` records them (each
    checkpoint records the same dict; a resume compares with it)."""

    mode: str
    seed: int
    output_dir: Path
    grpo: GRPOConfig
    rollout: RolloutConfig
    update: UpdateConfig
    optim: OptimConfig
    loop: LoopConfig
    eval: EvalConfig
    recorded: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StepOutcome:
    metrics: TrainingMetrics
    trajectories: list[Trajectory]


class GRPOTrainer:
    """The training loop: restore, baseline, steps with evals and checkpoints, stopping, final eval."""

    def __init__(self, settings: TrainerSettings, policy, train_scenarios, val_scenarios, env_factory: Callable,
                 optimizer, scheduler, console, sinks_factory: Callable[..., Any], store: CheckpointStore,
                 ctx: DistContext = LOCAL, ref_model: Any = None, rollout_policy: Any = None,
                 judge: Any = None, fsdp: Any = None) -> None:
        """``rollout_policy`` samples the rollouts and evals when it is not ``policy`` itself (a
        vLLM policy, ``.vllm``: the trained model is pushed to it after every update). ``judge``
        (the environments' judge) is closed with the run: a concurrent judge's threads stop.
        ``fsdp``: the root unit of ``policy.model`` sharded over the ranks (:mod:`inboxrl.parallel.fsdp`)."""
        self.settings, self.policy, self.env_factory = settings, policy, env_factory
        self.rollout_policy = rollout_policy or policy
        self.val_scenarios = val_scenarios
        self.optimizer, self.scheduler = optimizer, scheduler
        self.console, self.sinks_factory, self.store = console, sinks_factory, store
        self.sinks: Any = None  # opened by start(), rewound to the step the run starts from
        self.ref_model = ref_model  # the KL reference of full fine-tuning (None: LoRA's adapter-off model)
        self.output_dir = Path(settings.output_dir)
        self.checkpoints = store.root
        self.state = TrainerState()
        self.sampler = ScenarioSampler(train_scenarios, seed=settings.seed)
        self.ctx, self.sync = ctx, GradSync(ctx, fsdp=fsdp)  # the ranks of a data-parallel run (LOCAL: one)
        self.judge = judge

    # -- resume ----------------------------------------------------------------------------
    def restore(self, resume: bool, resume_from: str | None, fresh: bool) -> None:
        """Load the latest (``resume``) or a given (``resume_from``) checkpoint; the run's settings
        must be the checkpoint's (``ConfigError`` listing the differences otherwise). Then
        :meth:`start` the outputs from that step."""
        try:
            if not fresh and (resume or resume_from):
                self._load(Path(resume_from) if resume_from else self.store.latest())
            self.start()
        except BaseException:
            self.close()
            raise

    def _load(self, path: Path | None) -> None:
        if path is None:
            self.console.info("No checkpoint to resume from: starting fresh")
            return
        if not path.exists():
            raise ConfigError(f"resume_from {path} does not exist")
        recorded = ckpt.read_state(path)
        check_resume_settings(self.settings.recorded, recorded, str(path))
        check_world_size(recorded, self.ctx, path)
        loader = None
        if self.sync.fsdp is not None:  # every rank reads the one-rank format and keeps its shard
            loader = functools.partial(load_full_state, model=self.policy.model, optimizer=self.optimizer)
        state = ckpt.load_checkpoint(path, self.policy.model, self.optimizer, self.scheduler, load_weights=loader)
        if self.ctx.distributed:
            ckpt.load_rank_rng(path, self.ctx.rank)
        self.state = TrainerState.from_dict(state)
        self.sampler.cursor = self.state.cursor
        self.console.info(f"Resumed from {path} at step {self.state.step}")
        note = self.store.ensure_best(state, self._save_tokenizer)  # rank 0 only
        if note:
            self.console.info(f"Best model: {note}")

    def start(self) -> None:
        """Make the outputs what the starting state (fresh: step 0) had written: later trajectory
        and eval files deleted, metric files rewound (docs/robustness.md), then open the sinks.
        Rank 0 alone touches files (the store and the sinks factory of other ranks write nothing)."""
        if self.sinks is not None:
            return
        s = self.state
        removed = self.store.rewind_outputs(s.step, s.last_eval_step)
        if removed:
            self.console.info(f"Removed {len(removed)} files of steps after {s.step}: {', '.join(removed[:4])}"
                              + (", ..." if len(removed) > 4 else ""))
        self.sinks = self.sinks_factory(start_step=s.step, last_eval_step=s.last_eval_step)

    def close(self) -> None:
        """Close the sinks and the judge and release the output directory's lock (idempotent);
        on an error or Ctrl-C too (``fit``, ``restore``)."""
        close_judge(self.judge)
        if self.sinks is not None:
            self.sinks.close()
        self.store.close()

    # -- the loop --------------------------------------------------------------------------
    def fit(self, until_step: int | None = None) -> TrainerState:
        """Baseline eval, steps with periodic evals and checkpoints, early stopping, a final eval.

        ``until_step`` stops after that step as an interrupted run would (tests of resume use it);
        the schedule still spans ``max_steps``.
        """
        try:
            return self._fit(until_step)
        finally:
            self.close()

    def _fit(self, until_step: int | None) -> TrainerState:
        self.start()
        loop, s = self.settings.loop, self.state
        vllm = getattr(self.rollout_policy, "vllm", None)
        if vllm is not None:  # the sampler starts from the trainer's weights (warm start, resume)
            vllm.start(self.policy.model, s.step)
        self.baseline_eval()
        last = min(self.settings.optim.max_steps, until_step or self.settings.optim.max_steps)
        first = s.step + 1
        stopped = self.should_stop() if 1 <= s.step < last else None
        if stopped:  # resuming a run that had stopped early: it stays stopped
            self.console.info(f"Stopped early at step {s.step} before the resume: {stopped}")
            first = last + 1
        for step in range(first, last + 1):
            self.train_step(step)
            s.step, s.cursor = step, self.sampler.cursor
            best = False
            if loop.eval_steps and step % loop.eval_steps == 0:
                best = self.note_eval(step, self.run_eval(step))
            reason = self.should_stop()
            # an early stop is the run's last step: checkpoint it, as the final step is
            if best or (loop.save_steps and step % loop.save_steps == 0) or step == last or reason:
                self.save(step, best)
            if reason:
                self.console.info(f"Stopping early at step {step}: {reason}")
                break
        fault_point("run.before_final")
        if s.step >= 1 and s.last_eval_step != s.step:  # the final eval, then its step's checkpoint
            self.save(s.step, self.note_eval(s.step, self.run_eval(s.step)))  # records it (a resume skips it)
        self.console.info(f"Best eval accuracy {max(s.best_accuracy, 0):.3f} at step {s.best_step}; "
                          f"outputs in {self.output_dir}")
        self.sinks.close()
        if self.ctx.is_main:
            atomic_write_json(self.output_dir / "trainer_state.json", s.to_dict())
        return s

    # -- one step: rollout, advantages, update, logs ----------------------------------------
    def train_step(self, step: int) -> StepOutcome:
        g, log, max_steps = self.settings.grpo, self.console, self.settings.optim.max_steps
        t0 = time.time()
        log.step_start(step, max_steps)
        # -- rollout: B x G trajectories (PHASE 1)
        queries = g.per_device_train_batch_size * self.settings.optim.gradient_accumulation_steps
        log.collecting(g.num_generations, queries)
        trajectories, scenarios = self.collect(step)
        rollout_time = time.time() - t0

        # -- advantages: group-normalised, low-variance groups filtered (PHASE 2)
        adv = assign_advantages(trajectories, mode=self.settings.mode, process_weight=g.process_weight,
                                min_group_std=g.min_group_std)
        log.groups(trajectories, scenarios, adv)

        # -- update: micro-batches (PHASE 3), clipped surrogate, optimizer step (PHASE 4)
        t1 = time.time()
        update_settings = self.update_settings()
        upd = policy_update(self.policy.model, self.optimizer, self.scheduler, local_groups(trajectories, self.ctx),
                            update_settings, pad_id=self.policy.tokenizer.pad_token_id, sync=self.sync,
                            ref_model=self.ref_model)
        vllm = getattr(self.rollout_policy, "vllm", None)
        if vllm is not None:
            vllm.sync(self.policy.model, step)
        training_time = time.time() - t1
        self.state.skipped_steps += int(upd.skipped)
        log.micro_batching(upd, update_settings.token_budget)
        log.backprop(upd)

        # -- logs: metrics, console summaries, metrics.jsonl / wandb, the step's trajectories
        metrics = build_training_metrics(
            step=step, trajectories=trajectories, adv=adv, update=upd,
            learning_rate=self.optimizer.param_groups[0]["lr"], rollout_time=rollout_time,
            training_time=training_time, step_time=time.time() - t0,
            reward_history=self.state.reward_history, skipped_steps=self.state.skipped_steps)
        self.state.reward_history.append(metrics.avg_reward)
        log.group_summary(metrics)
        log.step_summary(metrics, max_steps)
        self.sinks.log_train(metrics)
        fault_point("metrics.after_train")
        if self.ctx.is_main:
            save_jsonl(trajectories, self.output_dir / "trajectories" / f"step_{step:04d}.jsonl")
        return StepOutcome(metrics=metrics, trajectories=trajectories)

    def collect(self, step: int) -> tuple[list[Trajectory], list]:
        """PHASE 1: B x G rollouts (x gradient_accumulation_steps batches, each seeded apart), one
        group per scenario; each rank runs its share of the groups and every rank returns all of
        them. A concurrent judge's verdicts are waited for once, after the last batch (one
        ``judge_step_budget`` for the step)."""
        g, batches, scenarios = self.settings.grpo, [], []
        for micro in range(self.settings.optim.gradient_accumulation_steps):
            batch = self.sampler.next_batch(g.per_device_train_batch_size)
            base = len(scenarios)
            requests = [RolloutRequest(scenario=s, group_id=base + i, rollout_index=j)
                        for i, s in enumerate(batch) for j in range(g.num_generations)]
            scenarios += batch
            batches.append((requests, self.rollout_settings(step, micro)))
        with self.sync.full_weights():  # FSDP: rank-local forwards on the unsharded model
            done = sharded_rollout_batches(self.rollout_policy, batches, self.env_factory, self.ctx)
        return [t for batch in done for t in batch], scenarios

    def rollout_settings(self, step: int, micro: int) -> RolloutSettings:
        """Training rollouts: sampled at the GRPO temperature / top-p, seeded per step and batch."""
        s = self.settings
        return RolloutSettings.from_config(s.rollout, temperature=s.grpo.temperature, top_p=s.grpo.top_p,
                                           seed=s.seed * 1_000_003 + step * 101 + micro)

    def update_settings(self) -> UpdateSettings:
        g, u, r = self.settings.grpo, self.settings.update, self.settings.rollout
        return UpdateSettings(num_iterations=g.num_iterations, epsilon_low=g.epsilon_low,
                              epsilon_high=g.epsilon_high, aggregation=g.loss_aggregation,
                              beta=g.beta, max_grad_norm=u.max_grad_norm, token_budget=u.token_budget,
                              constant_norm=r.max_tokens * r.max_turns, temperature=g.temperature,
                              share_prefix=u.share_prefix, recompute_old_logprobs=g.recompute_old_logprobs,
                              tis_cap=g.tis_cap)

    # -- evaluation and stopping ------------------------------------------------------------
    def baseline_eval(self) -> None:
        """Step-0 eval of the untrained model (or the configured / saved baseline)."""
        saved = self.output_dir / "eval_logs" / "baseline_eval.json"
        if self.state.baseline is not None:
            return
        if self.settings.eval.baseline_file:
            self.state.baseline = load_baseline(self.settings.eval.baseline_file)
        elif self.settings.loop.run_baseline_eval:
            result = self.run_eval(0)
            if self.ctx.is_main:
                save_baseline(self.output_dir, result.stats)
            self.note_eval(0, result)
            self.state.baseline = result.rewards_by_scenario()
        elif saved.exists():
            self.state.baseline = load_baseline(saved)
            self.console.info(f"Baseline: reusing {saved}")

    def run_eval(self, step: int) -> EvalResult:
        s = self.settings
        with self.sync.full_weights():
            result = evaluate(self.rollout_policy, self.val_scenarios, self.env_factory,
                              eval_settings(s.rollout, s.eval, s.seed), step, self.state.baseline,
                              self.output_dir, ctx=self.ctx)
        self.state.last_eval_step = step
        self.console.eval_report(result.stats, result.path)
        self.sinks.log_eval(result.stats, step)
        fault_point("eval.after_row")
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
        s, loop = self.state, self.settings.loop
        if s.best_accuracy >= loop.target_accuracy:
            return f"target accuracy {loop.target_accuracy:.2f} reached (best {s.best_accuracy:.3f})"
        if loop.patience and s.evals_without_improvement >= loop.patience:
            return f"no improvement in {loop.patience} evals (patience)"
        return None

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, step: int, best: bool) -> None:
        """Checkpoint ``step`` (with the run's settings); a new best also goes to ``{output_dir}/best``
        (its checkpoint, which already names it, is written first: docs/robustness.md).
        With several ranks: a collective (every rank's RNG state is gathered), rank 0 writes."""
        s, ctx = self.state, self.ctx
        s.step, s.cursor = step, self.sampler.cursor
        rank_rng = ctx.all_gather(ckpt.rng_state()) if ctx.distributed else None
        full = gather_full_state(self.policy.model, self.optimizer) if self.sync.fsdp is not None else None
        if best:
            s.best_checkpoint = str(self.output_dir / ckpt.BEST)
        if not ctx.is_main:
            return
        state = dict(s.to_dict(), **{SETTINGS_KEY: dict(self.settings.recorded), WORLD_SIZE_KEY: ctx.world_size})
        self.store.save(step, self.policy.model, self.optimizer, self.scheduler, state, best=best,
                        best_extra=self._save_tokenizer, rank_rng=rank_rng, full_state=full)

    def _save_tokenizer(self, directory: Path) -> None:
        self.policy.tokenizer.save_pretrained(str(directory))
