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

With FSDP (``--fsdp``, :mod:`inboxrl.parallel.fsdp`) the parameters are sharded instead of
replicated and every forward is a collective (each unit's weights are all-gathered), so:

* the forward runs through the FSDP root (:class:`~inboxrl.parallel.fsdp.FSDPRoot`), without the
  shared-prefix split (whether a micro-batch takes it differs between ranks, and it would run the
  decoder twice: a different number of all-gathers on each rank);
* every rank runs the same number of passes: the largest number of micro-batches of any rank,
  padded with zero-weight dummy passes (:meth:`GradSync.num_passes`);
* every pass's backward reduce-scatters (SUM) into the sharded gradient: no ``no_sync``-style
  accumulation, which would hold the full unsharded gradient of every layer until the last pass
  (the memory FSDP exists to save). The sum is the same either way;
* the no-grad forwards of the update (the KL reference, a recomputed pi_old) run inside
  :meth:`GradSync.full_weights`: the model unsharded once, rank-local forwards, resharded.

With one rank (:data:`inboxrl.parallel.LOCAL`) nothing is wrapped or exchanged: the forward is
:func:`inboxrl.grpo.forward.trained_logprobs` and the totals are the local ones.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, ContextManager

import torch
import torch.distributed as dist

from inboxrl.grpo.batching import MicroBatch
from inboxrl.grpo.forward import trained_logprobs
from inboxrl.grpo.loss import BatchTotals
from inboxrl.parallel.context import LOCAL, DistContext

if TYPE_CHECKING:
    from inboxrl.parallel.fsdp import FSDPRoot


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

    def __init__(self, ctx: DistContext = LOCAL, fsdp: "FSDPRoot | None" = None) -> None:
        """``fsdp``: the root unit of the sharded model (:func:`inboxrl.parallel.fsdp.shard_model`)
        when the run shards its parameters; None: DDP (several ranks) or the plain update."""
        self.ctx = ctx
        self.fsdp = fsdp if ctx.distributed else None
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
        """Forward/backward passes this rank runs: its micro-batches, at least one when distributed;
        with FSDP the most micro-batches of any rank (an all-reduce)."""
        if self.fsdp is not None:
            return max(self.ctx.all_reduce_int([local_micro_batches], op="max")[0], 1)
        return max(local_micro_batches, 1) if self.distributed else local_micro_batches

    def full_weights(self) -> ContextManager:
        """The context of rank-local forwards (rollouts, evals, no-grad log-probs): with FSDP the
        model unsharded (:func:`inboxrl.parallel.fsdp.full_weights`, a collective on entry and
        exit); a no-op otherwise."""
        if self.fsdp is None:
            return nullcontext()
        from inboxrl.parallel.fsdp import full_weights

        return full_weights(self.fsdp)

    def _ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        if self._wrapped is None or self._wrapped[0] is not model:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(_TrainForward(model), forward_sync_buffers=False,
                                          device_ids=None, find_unused_parameters=False)
            ddp.register_comm_hook(state=None, hook=_allreduce_sum_hook)
            self._wrapped = (model, ddp)
        return self._wrapped[1]

    def forward(self, model: torch.nn.Module, mb: MicroBatch, temperature: float, share_prefix: bool):
        """``trained_logprobs`` of ``mb``; through the FSDP root or DDP when distributed."""
        if self.fsdp is not None:
            return self.fsdp(trained_logprobs, mb, temperature, share_prefix=False)
        if not self.distributed:
            return trained_logprobs(model, mb, temperature, share_prefix=share_prefix)
        return self._ddp(model)(mb, temperature, share_prefix)

    def accumulate(self, model: torch.nn.Module, last: bool) -> ContextManager:
        """The context of one pass's forward + backward: ``no_sync`` unless it is the last pass."""
        if not self.distributed or last or self.fsdp is not None:
            return nullcontext()
        return self._ddp(model).no_sync()
