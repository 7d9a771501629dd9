"""Which process of a (possibly distributed) run writes: only the main process (rank 0) takes the
output-dir lock, writes checkpoints, ``best/``, metrics, trajectories and wandb.

:func:`is_main_process` asks ``torch.distributed`` when a process group is initialised, else the
launcher's ``RANK`` variable (torchrun sets it before the group exists), else answers True.
"""
from __future__ import annotations

import os


def launcher_rank() -> int:
    """The launcher's ``RANK`` (torchrun sets it), 0 without one; needs no torch import."""
    return int(os.environ.get("RANK", "0") or 0)


def process_rank() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return launcher_rank()


def is_main_process() -> bool:
    return process_rank() == 0
