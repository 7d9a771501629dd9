"""Sampler/trainer probability mismatch: its measurement and its correction.

The rollout engine records ``log π_sampler`` for every sampled token; the trainer's forward
gives ``log π_trainer`` for the same tokens under the same weights. They differ when the two
compute differently (a bf16 cached decode vs a full forward, another inference engine such as
vLLM, other kernels), and then the PPO ratio does not start at 1 and the update is slightly
off-policy (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL
Training").

**Measured every step** over the trained (``model``) tokens, with ``Δ = log π_sampler − log
π_trainer``:

* ``mismatch_kl`` = mean of ``Δ``: the k1 estimate of KL(π_sampler ‖ π_trainer) (the tokens were
  drawn from the sampler); 0 when they agree;
* ``probs_corr``: the Pearson correlation of the two token probabilities ``exp(log π)``;
  1 when they agree (1.0 also when either side is constant);
* ``max_logprob_gap`` = ``max |Δ|``.

**Corrected** (``recompute_old_logprobs``): π_old in the PPO ratio is the trainer's own
log-probs before the update (a no-grad forward), so the ratio is exactly 1 at the first
iteration, and each token's clipped surrogate is weighted by the truncated importance weight
``min(π_old / π_sampler, C)`` (``tis_cap`` C; token-level, not a product over the sequence),
which corrects for the tokens having been drawn from the sampler (TIS, Yao et al. 2025).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class MismatchStats:
    """Sampler vs trainer over ``tokens`` trained tokens (see the module docstring)."""

    mismatch_kl: float = 0.0
    probs_corr: float = 1.0
    max_logprob_gap: float = 0.0
    tokens: int = 0


class MismatchMeter:
    """Accumulates the sums behind :class:`MismatchStats` over micro-batches."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_gap = 0.0
        self.max_gap = 0.0
        self._sums = torch.zeros(5, dtype=torch.float64)  # Σx, Σy, Σx², Σy², Σxy of probs

    @torch.no_grad()
    def add(self, trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor) -> None:
        """Add the tokens where ``mask > 0`` (all three tensors of one shape)."""
        sel = mask > 0
        t = trainer_logp.detach()[sel].double().cpu()
        s = sampler_logp.detach()[sel].double().cpu()
        if t.numel() == 0:
            return
        gap = s - t
        self.n += int(t.numel())
        self.sum_gap += float(gap.sum())
        self.max_gap = max(self.max_gap, float(gap.abs().max()))
        x, y = s.exp(), t.exp()
        self._sums += torch.stack([x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()])

    def merged(self, ctx) -> "MismatchMeter":
        """The meter of the whole data-parallel step: every rank's sums added, the max of the
        maxima (``ctx``: a :class:`~inboxrl.parallel.context.DistContext`; one rank: ``self``)."""
        if not ctx.distributed:
            return self
        out = MismatchMeter()
        sums = ctx.all_reduce_sum([self.n, self.sum_gap, *self._sums.tolist()])
        out.n, out.sum_gap = int(round(sums[0])), sums[1]
        out._sums = torch.tensor(sums[2:], dtype=torch.float64)
        out.max_gap = max(ctx.all_gather(self.max_gap))
        return out

    def result(self) -> MismatchStats:
        if self.n == 0:
            return MismatchStats()
        n = self.n
        sx, sy, sxx, syy, sxy = (float(v) for v in self._sums)
        var_x, var_y = sxx - sx * sx / n, syy - sy * sy / n
        cov = sxy - sx * sy / n
        corr = cov / math.sqrt(var_x * var_y) if var_x > 1e-18 and var_y > 1e-18 else 1.0
        return MismatchStats(mismatch_kl=self.sum_gap / n, probs_corr=max(-1.0, min(1.0, corr)),
                             max_logprob_gap=self.max_gap, tokens=n)


def mismatch_stats(trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor) -> MismatchStats:
    """:class:`MismatchStats` of one set of tokens."""
    meter = MismatchMeter()
    meter.add(trainer_logp, sampler_logp, mask)
    return meter.result()


@torch.no_grad()
def tis_weights(old_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor,
                cap: float) -> torch.Tensor:
    """Token-level truncated importance weights ``min(π_old / π_sampler, cap)`` (0 off the mask)."""
    if cap <= 0:
        raise ValueError("tis_cap must be > 0")
    log_ratio = torch.where(mask > 0, old_logp - sampler_logp, torch.zeros_like(old_logp))
    return torch.clamp(torch.exp(log_ratio), max=cap) * (mask > 0)


@torch.no_grad()
def measure_mismatch(model: torch.nn.Module, trajectories: list, temperature: float = 1.0,
                     token_budget: int = 4096, pad_id: int = 0) -> tuple[MismatchStats, torch.Tensor]:
    """Sampler (the trajectories' recorded log-probs) vs ``model`` (one no-grad forward of the
    same tokens) over every ``model`` token: the stats and the per-token gaps
    ``log π_sampler − log π_trainer`` (benchmarks; the GRPO step measures its own batch)."""
    from inboxrl.grpo.batching import make_micro_batches
    from inboxrl.grpo.forward import policy_logprobs

    device = next(model.parameters()).device
    mbs = [mb.to(device) for mb in make_micro_batches(trajectories, token_budget, pad_id, require_kept=False)]
    meter, gaps = MismatchMeter(), []
    for mb, logp in zip(mbs, policy_logprobs(model, mbs, temperature)):
        meter.add(logp, mb.old_logprobs, mb.loss_mask)
        sel = mb.loss_mask > 0
        gaps.append((mb.old_logprobs[sel] - logp[sel]).double().cpu())
    return meter.result(), torch.cat(gaps) if gaps else torch.zeros(0, dtype=torch.float64)
