"""How the ranks of one GRPO step compute one update (docs/architecture.md, "Several processes").

Each rank holds the same model and the trajectories of its own groups. For the update of the N
ranks to equal the one-rank update of all the trajectories:

* **one normaliser**: the aggregation weights (:func:`inboxrl.grpo.loss.aggregation_weights`) use
  the step's totals over all ranks: ``token_mean`` divides by the trained tokens of the whole
  step, ``seq_mean`` and ``constant`` by its sequence count (:meth:`GradSync.totals`, an
  all-reduce before any backward). Each rank's loss is then its share of the global loss, and the
  global loss is the SUM of the ranks' losses;
* **summed gradients**: the forward runs inside ``torch.nn.parallel.DistributedDataParallel``
  with a comm hook that all-reduces the gradient buckets with SUM (DDP's default hook divides by
  N, which the global normaliser already did). Micro-batches but the last accumulate under
  ``no_sync()``; the last one's backward all-reduces the accumulated gradient, overlapped with
  the backward. After it every rank holds the same gradient, so clipping, the non-finite check
  and the optimizer step agree on every rank and the replicas stay identical;
* **every rank joins each all-reduce**: a rank without a trainable micro-batch (all its groups
  filtered, or fewer groups than ranks) runs one zero-weight pass on a 2-token dummy so that its
  (zero) gradient joins the sum.

With one rank (:data:`inboxrl.parallel.LOCAL`) nothing is wrapped or exchanged: the forward is
:func:`inboxrl.grpo.forward.trained_logprobs` and the totals are the local ones.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
import torch.distributed as dist

from inboxrl.grpo.batching import MicroBatch
from inboxrl.grpo.forward import trained_logprobs
from inboxrl.grpo.loss import BatchTotals
from inboxrl.parallel.context import LOCAL, DistContext


def _allreduce_sum_hook(process_group, bucket):  # DDP comm hook: SUM, no division by world size
    fut = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class _TrainForward(torch.nn.Module):
    """The training forward as a module call, so that DDP sees it (the forward itself calls the
    decoder and the head separately: :mod:`inboxrl.grpo.forward`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mb: MicroBatch, temperature: float, share_prefix: bool):
        return trained_logprobs(self.model, mb, temperature, share_prefix=share_prefix)


def dummy_micro_batch(device: torch.device, pad_id: int) -> MicroBatch:
    """A 2-token micro-batch with nothing trained: its zero-weight loss gives zero gradients."""
    ids = torch.full((1, 2), pad_id, dtype=torch.long, device=device)
    zeros = torch.zeros((1, 1), dtype=torch.float32, device=device)
    return MicroBatch(input_ids=ids, attention_mask=torch.ones_like(ids), target_ids=ids[:, 1:],
                      loss_mask=zeros, advantages=zeros, old_logprobs=zeros,
                      seq_index=torch.zeros(1, dtype=torch.long, device=device),
                      seq_num_tokens=torch.zeros(1, dtype=torch.float32, device=device))


class GradSync:
    """The collectives of one update; ``GradSync(LOCAL)`` (the default) is the one-rank update."""

    def __init__(self, ctx: DistContext = LOCAL) -> None:
        self.ctx = ctx
        self._wrapped: tuple[torch.nn.Module, torch.nn.Module] | None = None  # (model, DDP)

    @property
    def distributed(self) -> bool:
        return self.ctx.distributed

    def totals(self, local: BatchTotals) -> BatchTotals:
        """The step's totals over all ranks (an all-reduce; local ones with one rank)."""
        tokens, seqs = self.ctx.all_reduce_int([local.trainable_tokens, local.num_sequences])
        return BatchTotals(trainable_tokens=tokens, num_sequences=seqs)

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed over ranks (one all-reduce)."""
        keys = sorted(values)
        return dict(zip(keys, self.ctx.all_reduce_sum([values[k] for k in keys])))

    def num_passes(self, local_micro_batches: int) -> int:
        """Forward/backward passes this rank runs: its micro-batches, at least one when distributed."""
        return max(local_micro_batches, 1) if self.distributed else local_micro_batches

    def _ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        if self._wrapped is None or self._wrapped[0] is not model:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(_TrainForward(model), forward_sync_buffers=False,
                                          device_ids=None, find_unused_parameters=False)
            ddp.register_comm_hook(state=None, hook=_allreduce_sum_hook)
            self._wrapped = (model, ddp)
        return self._wrapped[1]

    def forward(self, model: torch.nn.Module, mb: MicroBatch, temperature: float, share_prefix: bool):
        """``trained_logprobs`` of ``mb``; through DDP when distributed."""
        if not self.distributed:
            return trained_logprobs(model, mb, temperature, share_prefix=share_prefix)
        return self._ddp(model)(mb, temperature, share_prefix)

    def accumulate(self, model: torch.nn.Module, last: bool) -> ContextManager:
        """The context of one pass's forward + backward: ``no_sync`` unless it is the last pass."""
        if not self.distributed or last:
            return nullcontext()
        return self._ddp(model).no_sync()
