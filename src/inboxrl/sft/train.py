"""Supervised fine-tuning on demonstrations (the warm start's training loop).

:func:`train_sft` trains through the GRPO update's own machinery — :func:`inboxrl.grpo.update.sft_update`
(cross-entropy on ``model`` tokens only, micro-batches under a token budget, gradient
accumulation, clipping, non-finite skip) with the trainer's AdamW and LR schedule — over shuffled
mini-batches of demonstrations for a number of epochs, with a tqdm progress bar.

:func:`run_sft` is the whole warm-start run on a policy: collect demonstrations on the training
scenarios, evaluate before (step 0), train, evaluate after (step = optimizer steps) with the
training eval (:func:`inboxrl.grpo.evaluation.evaluate`: eval JSON and trajectories under
``{output_dir}/eval_logs/``, Detailed Rubric Statistics printed) and print the protocol
statistics (:func:`inboxrl.logs.protocol.protocol_stats`).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from inboxrl.agent.trajectory import Trajectory
from inboxrl.settings.base import ConfigError


@dataclass
class SFTSettings:
    """The SFT loop: ``epochs`` passes over the demonstrations in shuffled mini-batches of
    ``batch_size`` (one optimizer step each), AdamW at ``learning_rate`` with ``warmup_steps`` of
    linear warm-up then ``schedule`` decay, gradient clipping at ``max_grad_norm``, micro-batches
    of at most ``token_budget`` padded tokens; ``share_prefix``: see :mod:`inboxrl.grpo.forward`."""

    epochs: int = 1
    learning_rate: float = 2e-4
    batch_size: int = 4
    warmup_steps: int = 1
    schedule: str = "cosine"
    max_grad_norm: float = 1.0
    token_budget: int = 4096
    share_prefix: bool = True
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.token_budget < 1:
            raise ValueError("need epochs >= 1, batch_size >= 1 and token_budget >= 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")

    def num_steps(self, num_demos: int) -> int:
        """Optimizer steps for ``num_demos`` demonstrations (the last batch of an epoch may be short)."""
        return self.epochs * math.ceil(num_demos / self.batch_size)


@dataclass
class SFTResult:
    """Per-step mean NLL over the model tokens of each batch, and totals."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    skipped: int = 0
    trained_tokens: int = 0
    seconds: float = 0.0


def _batches(n: int, settings: SFTSettings) -> list[list[int]]:
    rng = random.Random(settings.seed)
    out: list[list[int]] = []
    for _ in range(settings.epochs):
        order = list(range(n))
        rng.shuffle(order)
        out += [order[i:i + settings.batch_size] for i in range(0, n, settings.batch_size)]
    return out


def train_sft(model: Any, demos: Sequence[Trajectory], settings: SFTSettings, pad_id: int = 0,
              on_step: Callable[[int, Any], None] | None = None) -> SFTResult:
    """Train ``model`` in place on ``demos``; returns the per-step losses.

    Guarantees: exactly ``settings.num_steps(len(demos))`` calls of ``sft_update`` (each steps
    the scheduler once); only ``model`` tokens carry loss; deterministic batch order for a seed.
    Raises ``ValueError`` when there is no demonstration or no trainable parameter.
    ``on_step(step, UpdateStats)`` is called after every step.
    """
    from tqdm.auto import tqdm

    from inboxrl.grpo.optim import make_optimizer, make_scheduler
    from inboxrl.grpo.update import UpdateSettings, sft_update

    if not demos:
        raise ValueError("no demonstrations to train on")
    batches = _batches(len(demos), settings)
    optimizer = make_optimizer(model, lr=settings.learning_rate)
    scheduler = make_scheduler(optimizer, warmup_steps=min(settings.warmup_steps, len(batches) - 1),
                               total_steps=len(batches), kind=settings.schedule)
    update = UpdateSettings(max_grad_norm=settings.max_grad_norm, token_budget=settings.token_budget,
                            share_prefix=settings.share_prefix)
    per_epoch = max(1, len(batches) // settings.epochs)
    result = SFTResult()
    started = time.perf_counter()
    bar = tqdm(batches, desc="SFT", unit="step", disable=not settings.progress)
    for step, batch in enumerate(bar, start=1):
        stats = sft_update(model, optimizer, scheduler, [demos[i] for i in batch], update, pad_id)
        result.losses.append(stats.loss)
        result.steps += 1
        result.skipped += int(stats.skipped)
        result.trained_tokens += stats.trainable_tokens
        bar.set_postfix(loss=f"{stats.loss:.3f}", epoch=1 + (step - 1) // per_epoch)
        if on_step is not None:
            on_step(step, stats)
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class SFTReport:
    """What a warm-start run measured (saved as ``sft_report.json`` next to the model)."""

    num_demos: int
    demo_summary: str
    steps: int
    losses: list[float]
    train_seconds: float
    demo_seconds: float
    before: dict[str, Any] | None = None  # {"accuracy", "avg_reward", "protocol": {...}}
    after: dict[str, Any] | None = None


def _say(console: Any, message: str) -> None:
    (getattr(console, "info", None) or console.print)(message)


def _eval(policy: Any, data: Any, env_factory: Callable, eval_rollout: Any, step: int, out: Path,
          console: Any, label: str) -> dict[str, Any]:
    from inboxrl.grpo.evaluation import evaluate
    from inboxrl.logs.protocol import protocol_stats

    if hasattr(console, "eval_start"):
        console.eval_start(step, len(data.validation))
    result = evaluate(policy, data.validation, env_factory, eval_rollout, step, None, out, save=True)
    console.eval_report(result.stats, result.path)
    proto = protocol_stats(result.trajectories)
    _say(console, f"{label}: accuracy {result.accuracy:.3f}, avg reward {result.avg_reward:.3f}. "
                  + proto.line())
    return {"accuracy": result.accuracy, "avg_reward": result.avg_reward, "protocol": proto.to_dict(),
            "eval_path": str(result.path)}


def run_sft(policy: Any, data: Any, env_factory: Callable, judge: Any, eval_rollout: Any, console: Any,
            output_dir: str | Path, demo_settings: Any, sft_settings: SFTSettings, evaluate_before: bool = True,
            evaluate_after: bool = True) -> SFTReport:
    """Collect demonstrations on ``data.train`` (``judge`` scores them), evaluate ``policy`` on
    ``data.validation`` (rollouts per ``eval_rollout``, environments from ``env_factory``), train it
    in place, evaluate again. Eval files go to ``{output_dir}/eval_logs``.

    Raises ``ConfigError`` when the reference agent produced no usable demonstration.
    """
    from inboxrl.email.store import EmailStore
    from inboxrl.sft.demos import collect_demonstrations

    out = Path(output_dir)
    t0 = time.perf_counter()
    demos = collect_demonstrations(EmailStore(data.db_path), data.train, judge, policy.renderer, env_factory,
                                   demo_settings)
    demo_seconds = time.perf_counter() - t0
    _say(console, f"SFT demonstrations: {demos.summary()} in {demo_seconds:.1f}s")
    if not demos.trajectories:
        raise ConfigError("the reference agent produced no usable demonstration on the training scenarios "
                          f"({demos.summary()}); demonstrations over budget need a larger max_tokens / "
                          "max_context_tokens; unsuccessful ones point at the data (inboxrl eval-reference)")
    before = (_eval(policy, data, env_factory, eval_rollout, 0, out, console, "Before SFT")
              if evaluate_before else None)
    n_tokens = sum(t.num_model_tokens for t in demos.trajectories)
    _say(console, f"SFT: {len(demos.trajectories)} demonstrations ({n_tokens} model tokens), "
                  f"{sft_settings.epochs} epoch(s), {sft_settings.num_steps(len(demos.trajectories))} steps, "
                  f"lr {sft_settings.learning_rate:g}")
    pad = policy.tokenizer.pad_token_id
    result = train_sft(policy.model, demos.trajectories, sft_settings, pad_id=int(pad or 0))
    _say(console, f"SFT done: {result.steps} steps in {result.seconds:.0f}s, loss "
                  f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    after = (_eval(policy, data, env_factory, eval_rollout, result.steps, out, console, "After SFT")
             if evaluate_after else None)
    return SFTReport(num_demos=len(demos.trajectories), demo_summary=demos.summary(), steps=result.steps,
                     losses=result.losses, train_seconds=result.seconds, demo_seconds=demo_seconds,
                     before=before, after=after)
