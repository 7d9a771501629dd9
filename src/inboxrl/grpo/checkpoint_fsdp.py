"""Checkpoints of an FSDP run (``--fsdp``) in the one-rank format.

A sharded model's weights and optimizer state live in pieces on every rank; a checkpoint holds
them whole, in exactly the files a one-process run writes (:mod:`inboxrl.grpo.checkpoint`):

* :func:`gather_full_state` (a collective: every rank calls it) all-gathers the full state dicts
  with ``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True, cpu_offload=True``:
  rank 0 receives them on CPU, the other ranks empty dicts). For LoRA only the trainable
  parameters (the adapter) are gathered. The optimizer state, keyed by parameter name there, is
  renumbered to ``torch.optim.Optimizer.state_dict``'s own format (parameters numbered in
  parameter-group order), so ``optimizer.pt`` loads into a plain optimizer;
* :func:`load_full_state` (every rank) reads those files and hands each rank its shard with the
  ``set_*`` counterparts. A one-process checkpoint loads into an FSDP run and the reverse.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _options(**kwargs: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def _is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def _param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters, in the order its state dict numbers them."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def gather_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model state dict, optimizer state dict) of the sharded ``model``, whole, on rank 0 (CPU);
    two empty dicts on the other ranks. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    weights = get_model_state_dict(model, options=_options(cpu_offload=True, ignore_frozen_params=_is_peft(model)))
    named = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not named:
        return weights, {}
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    state = {index[name]: value for name, value in named["state"].items()}
    groups = [dict(g, params=[index[name] for name in g["params"]]) for g in named["param_groups"]]
    return weights, {"state": state, "param_groups": groups}


def _adapter_state(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The saved adapter keyed by the model's parameter names (peft saves them without the
    adapter name: ``...lora_A.weight`` for ``...lora_A.default.weight``)."""
    from peft.utils import load_peft_weights

    saved = load_peft_weights(str(path), device="cpu")
    adapter = getattr(model, "active_adapter", "default")
    wanted = {n.replace(f".{adapter}", ""): n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(wanted) - set(saved))
    if missing:
        raise ValueError(f"{path}: adapter keys do not match the model: {missing[:3]}")
    return {wanted[k]: saved[k] for k in wanted}


def _full_weights(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    missing = [n for n, _ in model.named_parameters() if n not in state]  # tied copies are named once
    if missing:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:3]})")
    return state


def load_full_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Load a checkpoint's weights (adapter or full) and ``optimizer.pt`` into the sharded
    ``model`` / ``optimizer``; every rank reads the files and keeps its shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    path = Path(path)
    weights = _adapter_state(path, model) if _is_peft(model) else _full_weights(path, model)
    set_model_state_dict(model, weights, options=_options(strict=False))
    if optimizer is None:
        return
    saved = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    names = _param_names(model, optimizer)
    named = {"state": {names[i]: value for i, value in saved["state"].items()},
             "param_groups": [dict(g, params=[names[i] for i in g["params"]]) for g in saved["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, named, options=_options())
