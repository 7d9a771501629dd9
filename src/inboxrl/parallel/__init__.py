"""Several processes (torch.distributed): the rank context, collectives and group sharding.

``torchrun --nproc_per_node N train_grpo.py ...`` starts N processes; :func:`init_from_env` joins
them into one process group (gloo on CPU, nccl on CUDA, each rank on ``cuda:LOCAL_RANK``). A plain
``python train_grpo.py`` gets :data:`LOCAL`, the one-rank context whose collectives are no-ops.
See docs/architecture.md ("Several processes") for what is sharded and what rank 0 writes.
"""
from inboxrl.parallel.context import LOCAL, DistContext, init_from_env, shutdown
from inboxrl.parallel.shard import merge_shards, shard_range

__all__ = ["LOCAL", "DistContext", "init_from_env", "merge_shards", "shard_range", "shutdown"]
