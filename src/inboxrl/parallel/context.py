"""The rank context of a run and the few collectives the trainer needs.

:func:`init_from_env` reads the variables ``torchrun`` (or ``accelerate launch``, which wraps it)
sets: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. With more than
one rank it starts the default process group (``env://``): backend ``nccl`` with each rank on
``cuda:LOCAL_RANK`` when CUDA is available (and not refused), ``gloo`` on CPU otherwise, and a
collective timeout, so a rank waiting on a dead peer fails instead of hanging. Without those
variables (or with one rank) it returns :data:`LOCAL`, whose collectives return their input: the
one-process run is the same code with nothing exchanged.

:func:`shutdown` passes a barrier before ``destroy_process_group`` (gloo processes that tear the
group down while a peer is still sending can abort at exit).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the run; ``device`` is where its model and collectives live."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that prints and writes the run's files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def all_reduce_int(self, values: Sequence[int], op: str = "sum") -> list[int]:
        """Element-wise ``sum`` or ``max`` of integers over ranks (int64, exact)."""
        if not self.distributed:
            return [int(v) for v in values]
        t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return [int(v) for v in t.tolist()]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


LOCAL = DistContext()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def init_from_env(timeout_s: float = DEFAULT_TIMEOUT_S, allow_cuda: bool = True) -> DistContext:
    """The context of this process: :data:`LOCAL` outside a launcher, else a joined process group.

    Idempotent: when the default group already exists (a caller started it), its rank and size
    are used. ``allow_cuda=False`` keeps every rank on CPU with gloo even where CUDA is present.
    """
    if dist.is_available() and dist.is_initialized():
        return _context(dist.get_rank(), dist.get_world_size(), allow_cuda)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return LOCAL
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank = _env_int("RANK", 0)
    ctx = _context(rank, world, allow_cuda)
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    kwargs = {"device_id": ctx.device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s), **kwargs)
    return ctx


def _context(rank: int, world: int, allow_cuda: bool) -> DistContext:
    local_rank = _env_int("LOCAL_RANK", rank)
    if allow_cuda and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                               "start at most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def shutdown(ctx: DistContext, clean: bool = True) -> None:
    """Leave the process group: after a barrier when ``clean`` (every rank finished), without one
    otherwise (this rank failed: its peers may never reach a barrier)."""
    if not ctx.distributed or not dist.is_initialized():
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()
