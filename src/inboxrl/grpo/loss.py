"""The GRPO clipped-surrogate loss, its aggregation and its metrics (DESIGN.md §5).

Per trained token: ``ρ = exp(logπ − logπ_old)`` with ``π_old`` the *sampling* log-probs, and
``ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·k3`` where ``k3 = exp(r) − r − 1``,
``r = logπ_ref − logπ`` (Schulman's unbiased, always ≥ 0 KL estimator, as in DeepSeekMath).
With ``recompute_old_logprobs`` π_old is the trainer's own log-probs before the update and the
surrogate of each token is weighted by its truncated importance weight ``w = min(π_old /
π_sampler, C)``: ``ℓ = −w·min(ρA, clip(ρ)·A) + β·k3`` (:mod:`inboxrl.grpo.mismatch`).

Aggregation is a fixed weight per token, computed from the WHOLE batch before it is split into
micro-batches, so that the sum of the micro-batch losses (and their accumulated gradients) is the
same whatever the split:

- ``token_mean``: ``w = 1 / T`` with ``T`` the trained tokens of the whole batch (DAPO);
- ``seq_mean``: ``w = 1 / (N · n_i)``: the mean over the ``N`` sequences of each sequence's token
  mean (the original GRPO);
- ``constant``: ``w = 1 / (N · C)`` with a constant ``C`` (``constant_norm``; Dr. GRPO).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from inboxrl.grpo.batching import MicroBatch

AGGREGATIONS = ("token_mean", "seq_mean", "constant")


@dataclass(frozen=True)
class BatchTotals:
    """Whole-batch counts the aggregation weights depend on."""

    trainable_tokens: int
    num_sequences: int


def batch_totals(micro_batches: Sequence[MicroBatch]) -> BatchTotals:
    return BatchTotals(sum(mb.num_trainable for mb in micro_batches),
                       sum(mb.num_rows for mb in micro_batches))


def aggregation_weights(mb: MicroBatch, aggregation: str, totals: BatchTotals,
                        constant_norm: float = 1024.0) -> torch.Tensor:
    """Per-token weights ``[B, L-1]`` (0 off the loss mask) whose sum over the batch gives the loss."""
    if aggregation == "token_mean":
        return mb.loss_mask / max(totals.trainable_tokens, 1)
    if aggregation == "seq_mean":
        per_row = 1.0 / (totals.num_sequences * mb.seq_num_tokens.clamp(min=1.0))
        return mb.loss_mask * per_row[:, None]
    if aggregation == "constant":
        if constant_norm <= 0:
            raise ValueError("constant_norm must be > 0")
        return mb.loss_mask / (totals.num_sequences * float(constant_norm))
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def token_logprobs(logits: torch.Tensor, target_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs ``[B, L-1]`` (float32) of ``target_ids`` under ``logits[:, :-1]`` (``[B, L, V]``).

    Computed in float32 whatever the model dtype; logits are divided by ``temperature`` first so
    that they match log-probs sampled at that temperature.
    """
    x = logits[:, :-1].float()
    if temperature != 1.0:
        x = x / temperature
    picked = x.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(x, dim=-1)


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy ``[B, L-1]`` (nats, float32) of the next-token distributions at ``logits[:, :-1]``."""
    x = logits[:, :-1].float()
    if temperature != 1.0:
        x = x / temperature
    logp = torch.log_softmax(x, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, epsilon_low: float, epsilon_high: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``−min(ρA, clip(ρ)A)`` and a 0/1 tensor marking tokens where the clip is active.

    Off the mask the log-ratio is forced to 0 so padding can never overflow ``exp``. "Clip active"
    is ``ρ > 1+ε_high`` with ``A > 0`` or ``ρ < 1−ε_low`` with ``A < 0`` (the gradient is then 0).
    """
    log_ratio = torch.where(mask > 0, logp - old_logp, torch.zeros_like(logp))
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    loss = -torch.minimum(ratio * advantages, clipped * advantages)
    active = ((ratio > 1.0 + epsilon_high) & (advantages > 0)) | ((ratio < 1.0 - epsilon_low) & (advantages < 0))
    return loss, active.float() * mask


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π || π_ref): ``exp(r) − r − 1``, ``r = logπ_ref − logπ`` (0 off mask)."""
    r = torch.where(mask > 0, ref_logp - logp, torch.zeros_like(logp))
    return torch.exp(r) - r - 1.0


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                         with_entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """For logits ``[T, V]`` already aligned with ``targets`` ``[T]``: float32 log-probs ``[T]`` (with
    grad) and, when ``with_entropy``, entropies ``[T]`` (no grad; else None), both at ``temperature``."""
    x = logits.float()
    if temperature != 1.0:
        x = x / temperature
    lse = torch.logsumexp(x, dim=-1)
    logp = x.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = lse - (torch.softmax(x, dim=-1) * x).sum(-1)
    return logp, entropy


@dataclass
class LossParts:
    """One micro-batch's weighted contributions (sum them over micro-batches for the batch)."""

    loss: torch.Tensor  # scalar with grad: Σ w·(surrogate + β·k3)
    policy_loss: float  # Σ w·surrogate
    kl: float  # Σ w·k3 (same weights, so loss = policy_loss + β·kl)
    clipped_tokens: float  # trained tokens where the clip is active


def grpo_loss(logp: torch.Tensor, mb: MicroBatch, weights: torch.Tensor, epsilon_low: float,
              epsilon_high: float, beta: float = 0.0, ref_logprobs: torch.Tensor | None = None,
              old_logprobs: torch.Tensor | None = None, is_weights: torch.Tensor | None = None) -> LossParts:
    """The weighted loss of one micro-batch from the policy's target log-probs ``logp`` ``[B, L-1]``.

    ``ref_logprobs`` (same shape) enables the KL term and its metric; ``beta > 0`` requires it.
    ``old_logprobs`` replaces the sampling log-probs ``mb.old_logprobs`` as π_old, and
    ``is_weights`` multiplies each token's surrogate (truncated importance sampling).
    """
    old = mb.old_logprobs if old_logprobs is None else old_logprobs
    surrogate, active = clipped_surrogate(logp, old, mb.advantages, mb.loss_mask,
                                          epsilon_low, epsilon_high)
    if is_weights is not None:
        surrogate = surrogate * is_weights
    policy = (weights * surrogate).sum()
    total = policy
    kl_value = 0.0
    if ref_logprobs is not None:
        kl = (weights * kl_k3(logp, ref_logprobs, mb.loss_mask)).sum()
        kl_value = float(kl.detach())
        if beta != 0.0:
            total = total + beta * kl
    elif beta != 0.0:
        raise ValueError("beta != 0 needs reference log-probs")
    return LossParts(total, float(policy.detach()), kl_value, float(active.sum()))


def sft_loss(logp: torch.Tensor, mb: MicroBatch, weights: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy (negative log-likelihood) of the trained tokens of one micro-batch."""
    return -(weights * torch.where(mb.loss_mask > 0, logp, torch.zeros_like(logp))).sum()
