"""Pack trajectories into right-padded micro-batches under a token budget (PHASE 3 of a step).

Alignment (explicit): a causal LM's logits at position ``j`` predict token ``j + 1``. Every
per-token tensor of a :class:`MicroBatch` except ``input_ids``/``attention_mask`` is in *target*
alignment, of length ``L - 1``: column ``i`` describes token ``i + 1`` of the sequence (its id in
``target_ids``, whether it is trained on in ``loss_mask``, its advantage, its sampling log-prob)
and is scored with ``logits[:, i]``. The very first token of a sequence has no context and is
never trained on (in practice it is always system/template markup).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from inboxrl.agent.trajectory import MODEL, Trajectory


@dataclass
class MicroBatch:
    """One forward pass worth of sequences; see the module docstring for the alignment."""

    input_ids: torch.Tensor  # [B, L] long, right-padded with pad_id
    attention_mask: torch.Tensor  # [B, L] long, 1 on real tokens
    target_ids: torch.Tensor  # [B, L-1] long: input_ids[:, 1:]
    loss_mask: torch.Tensor  # [B, L-1] float: 1 where target token is a `model` token
    advantages: torch.Tensor  # [B, L-1] float: the target token's advantage (0 off the mask)
    old_logprobs: torch.Tensor  # [B, L-1] float: the target token's sampling log-prob
    seq_index: torch.Tensor  # [B] long: index of each row's trajectory in the packed list
    seq_num_tokens: torch.Tensor  # [B] float: trained tokens of each row (loss_mask row sums)

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        """Real (unpadded) tokens in this micro-batch."""
        return int(self.attention_mask.sum())

    @property
    def num_trainable(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device: torch.device | str) -> "MicroBatch":
        return MicroBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


def trainable(traj: Trajectory, require_kept: bool = True) -> bool:
    """True when ``traj`` can contribute to the loss: kept (if required) and a model token after 0."""
    if require_kept and not traj.kept:
        return False
    return any(s == MODEL for s in traj.sources[1:])


def _check(traj: Trajectory) -> None:
    n = len(traj.token_ids)
    if not (len(traj.sources) == len(traj.logprobs) == len(traj.turn_index) == n):
        raise ValueError(f"trajectory {traj.scenario_id}/{traj.rollout_index}: token_ids, sources, "
                         "logprobs and turn_index must have the same length")
    bad = [t for t, s in zip(traj.turn_index, traj.sources) if s == MODEL and not 0 <= t < len(traj.turns)]
    if bad:
        raise ValueError(f"trajectory {traj.scenario_id}/{traj.rollout_index}: model token with turn "
                         f"index {bad[0]} but {len(traj.turns)} turns")


def _pack(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Greedy packing of indices sorted by (length, index): rows × max_len <= budget per group."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending lengths: the newest item sets the max length
        if current and (len(current) + 1) * lengths[i] > token_budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def _collate(trajs: list[Trajectory], indices: list[int], pad_id: int) -> MicroBatch:
    rows = [trajs[i] for i in indices]
    max_len = max(t.num_tokens for t in rows)
    b = len(rows)
    input_ids = torch.full((b, max_len), pad_id, dtype=torch.long)
    attention = torch.zeros((b, max_len), dtype=torch.long)
    mask = torch.zeros((b, max_len), dtype=torch.float32)
    adv = torch.zeros((b, max_len), dtype=torch.float32)
    old = torch.zeros((b, max_len), dtype=torch.float32)
    for r, t in enumerate(rows):
        n = t.num_tokens
        input_ids[r, :n] = torch.tensor(t.token_ids, dtype=torch.long)
        attention[r, :n] = 1
        mask[r, :n] = torch.tensor(t.model_mask(), dtype=torch.float32)
        adv[r, :n] = torch.tensor(t.token_advantages(), dtype=torch.float32)
        old[r, :n] = torch.tensor(t.logprobs, dtype=torch.float32)
    loss_mask = mask[:, 1:].contiguous()
    return MicroBatch(
        input_ids=input_ids, attention_mask=attention, target_ids=input_ids[:, 1:].contiguous(),
        loss_mask=loss_mask, advantages=adv[:, 1:] * loss_mask, old_logprobs=old[:, 1:] * loss_mask,
        seq_index=torch.tensor(indices, dtype=torch.long), seq_num_tokens=loss_mask.sum(dim=1))


def make_micro_batches(trajectories: Sequence[Trajectory], token_budget: int, pad_id: int | None,
                       require_kept: bool = True) -> list[MicroBatch]:
    """Pack the trainable trajectories into micro-batches.

    Guarantees: only trajectories passing :func:`trainable` are used (``seq_index`` refers to the
    position in that filtered list, which keeps the input order); packing is deterministic (sorted
    by length, ties by position); each micro-batch has ``rows × max_len <= token_budget`` unless it
    is a single sequence longer than the budget; rows are right-padded; every sequence appears in
    exactly one micro-batch. ``pad_id`` only fills padding (masked out); None means 0. Raises
    ``ValueError`` for inconsistent trajectories or a budget < 1.
    """
    if token_budget < 1:
        raise ValueError("token_budget must be >= 1")
    trajs = [t for t in trajectories if trainable(t, require_kept)]
    for t in trajs:
        _check(t)
    groups = _pack([t.num_tokens for t in trajs], token_budget)
    return [_collate(trajs, g, 0 if pad_id is None else pad_id) for g in groups]
