"""One optimisation step of the policy (PHASE 4 of a step) and of warm-start SFT.

A GRPO step: pack the kept trajectories into micro-batches, compute the whole-batch aggregation
weights, then for each of ``num_iterations`` passes: zero the gradients, forward + backward every
micro-batch (gradient accumulation; the weights already carry the whole-batch normaliser, so the
accumulated gradient does not depend on the split), clip the gradient norm and step the optimizer
— unless the loss or the gradient norm is not finite, in which case the gradients are zeroed, the
optimizer does not step, and the step is reported ``skipped`` (the trainer counts those).

The forward pass (selective LM head, shared prompt prefix) is :mod:`inboxrl.grpo.forward`; with
several ranks, :mod:`inboxrl.grpo.grad_sync` makes the step one global update (the normaliser of
the whole step, gradients summed over ranks).

Sampler/trainer mismatch (:mod:`inboxrl.grpo.mismatch`): every step measures ``mismatch_kl``,
``probs_corr`` and ``max_logprob_gap`` between the sampling log-probs and the trainer's log-probs
before the update (from the first pass, or from the recomputed π_old; with several ranks, on this
rank's tokens). With
``recompute_old_logprobs`` π_old is the trainer's no-grad forward before the update, and with
``tis_cap`` C > 0 each token's surrogate is weighted by ``min(π_old / π_sampler, C)``; off
(the default), π_old is the sampler's log-probs as in the original GRPO.

The LR scheduler steps exactly once per call (once per *training step*, not per iteration), also
when the step was skipped or empty, so the schedule stays aligned with the trainer's step counter.

Clip range defaults: ``ε_low = 0.2`` (PPO, Schulman et al. 2017; DeepSeekMath GRPO) and
``ε_high = 0.28`` ("clip-higher", DAPO, Yu et al. 2025, §3.1), which lets low-probability tokens
gain mass and delays entropy collapse.
"""
from __future__ import annotations

import math
import re
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch

from inboxrl.agent.trajectory import Trajectory
from inboxrl.grpo.batching import MicroBatch, make_micro_batches
from inboxrl.grpo.forward import policy_logprobs, reference_logprobs, trained_logprobs
from inboxrl.grpo.grad_sync import GradSync, dummy_micro_batch
from inboxrl.grpo.loss import AGGREGATIONS, aggregation_weights, batch_totals, grpo_loss, sft_loss
from inboxrl.grpo.mismatch import MismatchMeter, MismatchStats, tis_weights


@dataclass
class UpdateSettings:
    num_iterations: int = 1  # optimizer steps on the same batch (μ in GRPO); π_old stays the sampler's
    epsilon_low: float = 0.2
    epsilon_high: float = 0.28
    aggregation: str = "token_mean"  # token_mean | seq_mean | constant
    beta: float = 0.0  # KL (k3) weight to the reference model; 0 disables the reference forward
    max_grad_norm: float = 1.0  # <= 0: no clipping (the norm is still measured)
    token_budget: int = 4096  # rows × padded length per micro-batch
    constant_norm: int = 1024  # C of the `constant` aggregation (Dr. GRPO)
    temperature: float = 1.0  # the sampling temperature: logits are divided by it before log-softmax
    share_prefix: bool = True  # run a micro-batch's common prompt prefix once (grpo/forward.py; exact)
    recompute_old_logprobs: bool = False  # π_old = the trainer's forward before the update (not the sampler's)
    tis_cap: float = 2.0  # C of the truncated importance weight min(π_old/π_sampler, C); 0 = off

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.num_iterations < 1 or self.token_budget < 1 or self.temperature <= 0:
            raise ValueError("need num_iterations >= 1, token_budget >= 1 and temperature > 0")
        if self.epsilon_low < 0 or self.epsilon_high < 0 or self.beta < 0:
            raise ValueError("epsilon_low, epsilon_high and beta must be >= 0")
        if self.tis_cap < 0:
            raise ValueError("tis_cap must be >= 0 (0 turns truncated importance sampling off)")


@dataclass
class UpdateStats:
    """Metrics of one step; loss-type values are averaged over the iterations that ran."""

    loss: float = 0.0
    policy_loss: float = 0.0
    kl: float = 0.0
    grad_norm: float = 0.0
    clip_fraction: float = 0.0
    entropy: float = 0.0
    trainable_tokens: int = 0  # `model` tokens of kept trajectories that entered the loss
    total_tokens: int = 0  # all tokens of all trajectories passed in (filtered ones included)
    num_micro_batches: int = 0
    micro_batch_rows: list[int] = field(default_factory=list)  # this process's micro-batches: rows of each
    micro_batch_padded_tokens: list[int] = field(default_factory=list)  # rows x padded length of each
    skipped: bool = False
    skip_reason: str | None = None
    iterations: int = 0  # optimizer steps actually taken
    mismatch: MismatchStats = field(default_factory=MismatchStats)  # sampler vs trainer, before the update


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _finish(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: float,
            max_grad_norm: float) -> tuple[float, str | None]:
    """Clip and step; returns (grad norm, skip reason or None). Skipped: grads zeroed, no step."""
    params = [p for p in model.parameters() if p.requires_grad]
    limit = max_grad_norm if max_grad_norm and max_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
    reason = None
    if not math.isfinite(loss):
        reason = f"non-finite loss ({loss})"
    elif not math.isfinite(grad_norm):
        reason = f"non-finite grad norm ({grad_norm})"
    if reason is not None:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
    return grad_norm, reason


def _step_scheduler(scheduler) -> None:
    """Step once; silence torch's "scheduler before optimizer" warning for a skipped first step."""
    if scheduler is None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        scheduler.step()


@dataclass
class _OldPolicy:
    """π_old and the importance weights of each micro-batch (None: the sampler's, no weights)."""

    logprobs: list[torch.Tensor] | None = None
    is_weights: list[torch.Tensor] | None = None


def _old_policy(model: torch.nn.Module, mbs: list[MicroBatch], s: UpdateSettings,
                meter: MismatchMeter) -> _OldPolicy:
    """Recompute π_old (``recompute_old_logprobs``), measuring the mismatch on it, and the TIS weights."""
    if not s.recompute_old_logprobs:
        return _OldPolicy()
    olds = policy_logprobs(model, mbs, s.temperature, s.share_prefix)
    for old, mb in zip(olds, mbs):
        meter.add(old, mb.old_logprobs, mb.loss_mask)
    weights = ([tis_weights(old, mb.old_logprobs, mb.loss_mask, s.tis_cap) for old, mb in zip(olds, mbs)]
               if s.tis_cap > 0 else None)
    return _OldPolicy(olds, weights)


def _grpo_pass(model: torch.nn.Module, mbs: list[MicroBatch], weights: list[torch.Tensor],
               refs: list[torch.Tensor] | None, s: UpdateSettings, sync: GradSync, pad_id: int,
               old: _OldPolicy, meter: MismatchMeter | None) -> dict[str, float]:
    """Forward + backward of this rank's micro-batches; the metrics summed over all ranks.
    ``meter`` (first pass, π_old = sampler) measures the mismatch on the pass's own log-probs."""
    out = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clipped": 0.0, "entropy": 0.0}
    passes = sync.num_passes(len(mbs))
    for i in range(passes):
        real = i < len(mbs)
        mb = mbs[i] if real else dummy_micro_batch(_device(model), 0 if pad_id is None else pad_id)
        weight = weights[i] if real else torch.zeros_like(mb.loss_mask)
        with sync.accumulate(model, last=i == passes - 1):
            logp, entropy = sync.forward(model, mb, s.temperature, s.share_prefix)
            if meter is not None and real:
                meter.add(logp, mb.old_logprobs, mb.loss_mask)
            parts = grpo_loss(logp, mb, weight, s.epsilon_low, s.epsilon_high, s.beta if real else 0.0,
                              refs[i] if refs is not None and real else None,
                              old.logprobs[i] if old.logprobs is not None and real else None,
                              old.is_weights[i] if old.is_weights is not None and real else None)
            parts.loss.backward()
        out["loss"] += float(parts.loss.detach())
        out["policy_loss"] += parts.policy_loss
        out["kl"] += parts.kl
        out["clipped"] += parts.clipped_tokens
        out["entropy"] += float(entropy.sum())
    return sync.sum(out) if sync.distributed else out


def _prepare(model: torch.nn.Module, trajectories: Sequence[Trajectory], settings: UpdateSettings,
             pad_id: int, require_kept: bool, sync: GradSync | None = None):
    """Micro-batches on the model's device, the step's totals (over all ranks when ``sync`` is
    distributed: the global normaliser), and the stats to fill in."""
    device = _device(model)
    mbs = [mb.to(device) for mb in make_micro_batches(trajectories, settings.token_budget, pad_id,
                                                       require_kept=require_kept)]
    totals = batch_totals(mbs)
    counts = [len(mbs), sum(t.num_tokens for t in trajectories)]
    if sync is not None and sync.distributed:
        totals, counts = sync.totals(totals), sync.ctx.all_reduce_int(counts)
    stats = UpdateStats(trainable_tokens=totals.trainable_tokens, num_micro_batches=counts[0],
                        total_tokens=counts[1], micro_batch_rows=[mb.num_rows for mb in mbs],
                        micro_batch_padded_tokens=[int(mb.input_ids.numel()) for mb in mbs])
    return mbs, totals, stats


def policy_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, trajectories:
                  Sequence[Trajectory], settings: UpdateSettings, pad_id: int = 0,
                  ref_model: torch.nn.Module | None = None, sync: GradSync | None = None) -> UpdateStats:
    """One GRPO training step on ``trajectories`` (advantages already assigned); see the module doc.

    ``sync`` (:class:`~inboxrl.grpo.grad_sync.GradSync`) makes it one rank's part of a
    data-parallel step: ``trajectories`` are this rank's groups, the normaliser and the returned
    stats are the whole step's, the gradient is summed over ranks before clipping; None or one
    rank: the plain update.

    Guarantees: only kept trajectories' ``model`` tokens are trained on; the optimizer steps at most
    ``num_iterations`` times and never on a non-finite loss or gradient norm (then ``skipped`` is
    True, gradients are zeroed, later iterations are not run); ``scheduler`` (may be None) steps
    once. A batch without trainable tokens is ``skipped`` with reason ``no trainable tokens``.
    """
    sync = sync or GradSync()
    mbs, totals, stats = _prepare(model, trajectories, settings, pad_id, require_kept=True, sync=sync)
    if totals.trainable_tokens == 0:
        stats.skipped, stats.skip_reason = True, "no trainable tokens"
    else:
        weights = [aggregation_weights(mb, settings.aggregation, totals, settings.constant_norm) for mb in mbs]
        meter = MismatchMeter()
        no_grad_forwards = settings.beta > 0 or settings.recompute_old_logprobs
        with sync.full_weights() if no_grad_forwards else nullcontext():  # FSDP: rank-local, unsharded
            refs = (reference_logprobs(model, mbs, ref_model, settings.temperature, settings.share_prefix)
                    if settings.beta > 0 else None)
            old = _old_policy(model, mbs, settings, meter)
        model.train()
        acc = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clipped": 0.0, "entropy": 0.0, "grad_norm": 0.0}
        for it in range(settings.num_iterations):
            optimizer.zero_grad(set_to_none=True)
            out = _grpo_pass(model, mbs, weights, refs, settings, sync, pad_id, old,
                             meter if it == 0 and old.logprobs is None else None)
            grad_norm, reason = _finish(model, optimizer, out["loss"], settings.max_grad_norm)
            for k, v in out.items():
                acc[k] += v
            acc["grad_norm"] += grad_norm
            if reason is not None:
                stats.skipped, stats.skip_reason = True, reason
                break
            stats.iterations += 1
        n = stats.iterations + int(stats.skipped)
        stats.loss, stats.policy_loss, stats.kl = acc["loss"] / n, acc["policy_loss"] / n, acc["kl"] / n
        stats.grad_norm = acc["grad_norm"] / n
        stats.clip_fraction = acc["clipped"] / (n * totals.trainable_tokens)
        stats.entropy = acc["entropy"] / (n * totals.trainable_tokens)
        stats.mismatch = meter.merged(sync.ctx).result()  # the whole step's, over all ranks
    _step_scheduler(scheduler)
    return stats


def sft_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, trajectories:
               Sequence[Trajectory], settings: UpdateSettings, pad_id: int = 0) -> UpdateStats:
    """One supervised step: token-mean cross-entropy over the ``model`` tokens of all trajectories
    (``kept`` is ignored), same micro-batching, clipping and non-finite skip as :func:`policy_update`;
    ``scheduler`` (may be None) steps once. ``loss`` = ``policy_loss`` = the mean NLL."""
    mbs, totals, stats = _prepare(model, trajectories, settings, pad_id, require_kept=False)
    if totals.trainable_tokens == 0:
        stats.skipped, stats.skip_reason = True, "no trainable tokens"
    else:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for mb in mbs:
            logp = trained_logprobs(model, mb, with_entropy=False, share_prefix=settings.share_prefix)[0]
            part = sft_loss(logp, mb, aggregation_weights(mb, "token_mean", totals))
            part.backward()
            loss += float(part.detach())
        stats.grad_norm, reason = _finish(model, optimizer, loss, settings.max_grad_norm)
        stats.loss = stats.policy_loss = loss
        stats.skipped, stats.skip_reason = reason is not None, reason
        stats.iterations = int(reason is None)
    _step_scheduler(scheduler)
    return stats
