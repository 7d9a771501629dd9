"""One optimisation step of the policy (DESIGN.md §1, phase 4) and of warm-start SFT.

A GRPO step: pack the kept trajectories into micro-batches, compute the whole-batch aggregation
weights, then for each of ``num_iterations`` passes: zero the gradients, forward + backward every
micro-batch (gradient accumulation; the weights already carry the whole-batch normaliser, so the
accumulated gradient does not depend on the split), clip the gradient norm and step the optimizer
— unless the loss or the gradient norm is not finite, in which case the gradients are zeroed, the
optimizer does not step, and the step is reported ``skipped`` (the trainer counts those).

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
from dataclasses import dataclass
from typing import Sequence

import torch

from inboxrl.agent.trajectory import Trajectory
from inboxrl.grpo.batching import MicroBatch, make_micro_batches
from inboxrl.grpo.loss import AGGREGATIONS, aggregation_weights, batch_totals, grpo_loss, logprobs_from_logits, sft_loss


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

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.num_iterations < 1 or self.token_budget < 1 or self.temperature <= 0:
            raise ValueError("need num_iterations >= 1, token_budget >= 1 and temperature > 0")
        if self.epsilon_low < 0 or self.epsilon_high < 0 or self.beta < 0:
            raise ValueError("epsilon_low, epsilon_high and beta must be >= 0")


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
    skipped: bool = False
    skip_reason: str | None = None
    iterations: int = 0  # optimizer steps actually taken


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# config attributes that post-process ``lm_head`` outputs: such models take the full-logits path
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _head_split(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """``(decoder, lm_head)`` when the logits are exactly ``lm_head(decoder(...).last_hidden_state)``
    (Llama, Qwen, Mistral, SmolLM... and their peft wrappers), else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is None or not type(base).__name__.endswith("ForCausalLM"):
        return None
    if any(getattr(cfg, a, None) is not None for a in _LOGIT_POSTPROCESSING):
        return None
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    return (decoder, head) if isinstance(head, torch.nn.Linear) and decoder is not None else None


def trained_logprobs(model: torch.nn.Module, mb: MicroBatch, temperature: float = 1.0,
                     with_entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``[B, L-1]`` (float32, with grad, 0 off the loss mask) of the trained target tokens,
    and their entropies ``[T]`` (no grad; None unless ``with_entropy``).

    The LM head is applied only at the positions that predict trained tokens (fewer FLOPs and a
    ``[T, V]`` instead of ``[B, L, V]`` logits tensor) when the architecture allows it; otherwise
    the full logits are computed and the same positions selected. Both give the same numbers.
    """
    sel = mb.loss_mask > 0
    split = _head_split(model)
    if split is None:
        logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits
        logits = logits[:, :-1][sel]
    else:
        decoder, head = split
        hidden = decoder(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][sel])
    logp_sel, entropy = logprobs_from_logits(logits, mb.target_ids[sel], temperature, with_entropy)
    logp = torch.zeros(sel.shape, dtype=logp_sel.dtype, device=logp_sel.device).masked_scatter(sel, logp_sel)
    return logp, entropy


@torch.no_grad()
def reference_logprobs(model: torch.nn.Module, micro_batches: Sequence[MicroBatch],
                       ref_model: torch.nn.Module | None = None, temperature: float = 1.0) -> list[torch.Tensor]:
    """Log-probs ``[B, L-1]`` of each micro-batch's trained targets under the reference policy.

    The reference is ``ref_model`` when given, else ``model`` with its adapter disabled (peft:
    ``model.disable_adapter()``, no second copy in memory). Raises ``ValueError`` for a model that
    is neither a peft model nor accompanied by ``ref_model``.
    """
    if ref_model is None and not hasattr(model, "disable_adapter"):
        raise ValueError("KL (beta > 0) with full fine-tuning needs ref_model")
    ref = ref_model if ref_model is not None else model
    ctx = model.disable_adapter() if ref_model is None else nullcontext()
    was_training = ref.training
    ref.eval()
    try:
        with ctx:
            return [trained_logprobs(ref, mb, temperature, with_entropy=False)[0] for mb in micro_batches]
    finally:
        ref.train(was_training)


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


def _grpo_pass(model: torch.nn.Module, mbs: list[MicroBatch], weights: list[torch.Tensor],
               refs: list[torch.Tensor] | None, s: UpdateSettings) -> dict[str, float]:
    out = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clipped": 0.0, "entropy": 0.0}
    for i, mb in enumerate(mbs):
        logp, entropy = trained_logprobs(model, mb, s.temperature)
        parts = grpo_loss(logp, mb, weights[i], s.epsilon_low, s.epsilon_high, s.beta,
                          refs[i] if refs is not None else None)
        parts.loss.backward()
        out["loss"] += float(parts.loss.detach())
        out["policy_loss"] += parts.policy_loss
        out["kl"] += parts.kl
        out["clipped"] += parts.clipped_tokens
        out["entropy"] += float(entropy.sum())
    return out


def _prepare(model: torch.nn.Module, trajectories: Sequence[Trajectory], settings: UpdateSettings,
             pad_id: int, require_kept: bool):
    """Micro-batches on the model's device, their batch-wide totals, and the stats to fill in."""
    device = _device(model)
    mbs = [mb.to(device) for mb in make_micro_batches(trajectories, settings.token_budget, pad_id,
                                                       require_kept=require_kept)]
    totals = batch_totals(mbs)
    stats = UpdateStats(trainable_tokens=totals.trainable_tokens, num_micro_batches=len(mbs),
                        total_tokens=sum(t.num_tokens for t in trajectories))
    return mbs, totals, stats


def policy_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, trajectories:
                  Sequence[Trajectory], settings: UpdateSettings, pad_id: int = 0,
                  ref_model: torch.nn.Module | None = None) -> UpdateStats:
    """One GRPO training step on ``trajectories`` (advantages already assigned); see the module doc.

    Guarantees: only kept trajectories' ``model`` tokens are trained on; the optimizer steps at most
    ``num_iterations`` times and never on a non-finite loss or gradient norm (then ``skipped`` is
    True, gradients are zeroed, later iterations are not run); ``scheduler`` (may be None) steps
    once. A batch without trainable tokens is ``skipped`` with reason ``no trainable tokens``.
    """
    mbs, totals, stats = _prepare(model, trajectories, settings, pad_id, require_kept=True)
    if totals.trainable_tokens == 0:
        stats.skipped, stats.skip_reason = True, "no trainable tokens"
    else:
        weights = [aggregation_weights(mb, settings.aggregation, totals, settings.constant_norm) for mb in mbs]
        refs = reference_logprobs(model, mbs, ref_model, settings.temperature) if settings.beta > 0 else None
        model.train()
        acc = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clipped": 0.0, "entropy": 0.0, "grad_norm": 0.0}
        for _ in range(settings.num_iterations):
            optimizer.zero_grad(set_to_none=True)
            out = _grpo_pass(model, mbs, weights, refs, settings)
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
            logp = trained_logprobs(model, mb, with_entropy=False)[0]
            part = sft_loss(logp, mb, aggregation_weights(mb, "token_mean", totals))
            part.backward()
            loss += float(part.detach())
        stats.grad_norm, reason = _finish(model, optimizer, loss, settings.max_grad_norm)
        stats.loss = stats.policy_loss = loss
        stats.skipped, stats.skip_reason = reason is not None, reason
        stats.iterations = int(reason is None)
    _step_scheduler(scheduler)
    return stats
