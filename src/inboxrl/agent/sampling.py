"""Next-token sampling for the rollout engine: seeded per-row generators, temperature, top-p,
greedy; and the log-prob that is recorded for each sampled token.

**Recorded log-prob.** For every sampled token we record ``log π_T(token)``: ``log_softmax`` of
``logits / temperature`` in float32 (temperature 1 for greedy decoding), i.e. the sampling
distribution before the top-p cut. The trainer recomputes ``log π_T`` with the same temperature
(``UpdateSettings.temperature``, as TRL does) and forms ``exp(log π_T - log π_old)``, so the ratio
is exactly 1 at the first update whatever temperature the rollouts used. Top-p truncation is not
part of π_old (the truncated tokens were never drawn, so their ratios never enter the loss).

**Reproducibility.** Each rollout has its own ``torch.Generator`` seeded from
``(seed, group_id, rollout_index)``, and draws exactly one uniform number per sampled token, so a
rollout's samples do not depend on which other rollouts share its batch.
"""
from __future__ import annotations

import hashlib

import torch


def row_generator(seed: int, group_id: int, rollout_index: int) -> torch.Generator:
    """A CPU generator whose seed is a stable hash of ``(seed, group_id, rollout_index)``."""
    digest = hashlib.sha256(f"{seed}:{group_id}:{rollout_index}".encode()).digest()
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return gen


def sample_next(logits: torch.Tensor, generators: list[torch.Generator], temperature: float = 1.0,
                top_p: float = 1.0, greedy: bool = False) -> tuple[list[int], list[float]]:
    """Pick one token per row of ``logits`` (shape ``(rows, vocab)``).

    Returns the token ids and their log-probs under ``softmax(logits / temperature)`` (see the
    module docstring). ``greedy`` takes the arg-max (lowest id on ties) and draws nothing;
    otherwise tokens are drawn from ``softmax(logits / temperature)`` restricted to the smallest
    set of most likely tokens whose mass reaches ``top_p``, by inverse-CDF with one uniform
    number from each row's generator.
    """
    logits = logits.float()
    if greedy or temperature <= 0:
        logp = torch.log_softmax(logits, dim=-1)
        tokens = torch.argmax(logits, dim=-1)
    else:
        logp = torch.log_softmax(logits / temperature, dim=-1)
        tokens = _draw(logits / temperature, generators, top_p)
    picked = logp.gather(-1, tokens[:, None])[:, 0]
    return tokens.tolist(), picked.tolist()


def _draw(scaled: torch.Tensor, generators: list[torch.Generator], top_p: float) -> torch.Tensor:
    """Inverse-CDF draw; over the vocabulary order when ``top_p == 1`` (no sort needed), over
    the probability-sorted order with the nucleus cut otherwise."""
    if len(generators) != scaled.shape[0]:
        raise ValueError("one generator per row")
    probs = torch.softmax(scaled, dim=-1)
    if top_p < 1.0:
        probs, order = torch.sort(probs, dim=-1, descending=True)
        cum = torch.cumsum(probs, dim=-1)
        keep = (cum - probs) < top_p  # a token is kept if the mass before it is < top_p
        keep[:, 0] = True
        probs = probs * keep
    cum = torch.cumsum(probs, dim=-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(scaled.device)
    pos = torch.searchsorted(cum, (u * cum[:, -1])[:, None], right=True)
    # never land on a zero-probability token (possible only through rounding at the top end)
    nonzero = probs > 0
    last_nonzero = probs.shape[-1] - 1 - torch.argmax(nonzero.flip(-1).int(), dim=-1, keepdim=True)
    pos = torch.minimum(pos, last_nonzero)[:, 0]
    return order.gather(-1, pos[:, None])[:, 0] if top_p < 1.0 else pos
