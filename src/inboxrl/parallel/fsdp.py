"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) for ``--fsdp``.

Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel": each rank
keeps 1/N of every parameter (and of its gradient and optimizer state); a module's full
parameters are all-gathered just before its forward (and again before its backward) and freed
after, and the gradients are reduce-scattered so that each rank receives the summed gradient of
its own shard. What this module sets up (docs/architecture.md, "Several processes"):

* **units**: one FSDP unit per decoder layer and a root unit, :class:`FSDPRoot`, that holds the
  rest (embeddings, final norm, LM head; tied weights stay together in the root). Every training
  forward runs through the root (``root(fn, *args)`` calls ``fn(model, *args)``) so that its
  parameters are gathered, however ``fn`` calls the model's parts;
* **summed gradients**: the reduce-scatter of every unit is a plain SUM (gradient divide factor
  1, SUM-only collectives, which gloo needs too): the trainer's loss already carries the global
  normaliser of the step, as with DDP;
* **full weights** (:func:`full_weights`): rollouts, evals and no-grad log-prob passes run a
  different number of forwards on each rank, so they cannot be collectives. Inside the context
  every unit is unsharded once (one all-gather per unit, all ranks together), nothing is
  resharded after a forward, and on exit every unit is resharded and FSDP's per-iteration state
  (``reset_iter_state``) cleared, so the rank-local forwards leave no trace in the next training
  backward's bookkeeping.

Every rank must call :func:`shard_model`, :func:`full_weights` and each root forward the same
number of times, in the same order.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from inboxrl.parallel.context import DistContext


class FSDPRoot(torch.nn.Module):
    """The root FSDP unit around the model: ``root(fn, *args, **kwargs)`` is ``fn(model, ...)``
    with the root's parameters gathered for the duration of the call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(self.module, *args, **kwargs)


def _noop(model: torch.nn.Module) -> None:
    return None


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers of a transformers causal LM (or its peft wrapper): the FSDP units."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        layers = getattr(base.get_decoder(), "layers", None)
    except (AttributeError, NotImplementedError):
        layers = None
    if not layers:
        raise ValueError(f"fsdp: cannot find the decoder layers of {type(base).__name__} "
                         "(expected model.get_decoder().layers)")
    return list(layers)


def fsdp_units(root: torch.nn.Module) -> list[torch.nn.Module]:
    """Every FSDP unit under ``root`` (the root included), in module order."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in root.modules() if isinstance(m, FSDPModule)]


def shard_model(model: torch.nn.Module, ctx: DistContext) -> FSDPRoot:
    """Shard ``model`` in place over ``ctx``'s ranks (a collective-free setup on every rank) and
    return its root unit. Parameters become DTensors: build the optimizer after this."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    root = fully_shard(FSDPRoot(model), mesh=mesh)
    for unit in fsdp_units(root):
        unit.set_gradient_divide_factor(1.0)  # no division by N: the loss holds the global normaliser
        unit.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no PREMUL_SUM)
    with torch.no_grad():
        root(_noop)  # the first forward through the root makes it FSDP's root (lazy init)
    root.reshard()  # the root keeps its gathered weights after a forward: the sharded ones for the optimizer
    return root


@contextmanager
def full_weights(root: FSDPRoot) -> Iterator[torch.nn.Module]:
    """The model with its full parameters on every rank, for rank-local forwards (rollouts,
    evals, no-grad log-probs): no collective runs inside. Entering and leaving are collectives."""
    units = fsdp_units(root)
    for unit in units:
        unit.unshard()
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield root.module
    finally:
        for unit in units:  # layers reshard after each training forward; the root keeps its weights
            unit.set_reshard_after_forward(unit is not root, recurse=False)
        root.reset_iter_state()
        for unit in units:
            unit.reshard()
