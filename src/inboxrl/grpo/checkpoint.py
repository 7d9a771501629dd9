"""Resumable checkpoints: ``<output_dir>/checkpoint-NNNN/`` written atomically.

A checkpoint directory holds the weights (``save_pretrained``: the LoRA adapter for a peft model,
the full weights otherwise), ``optimizer.pt``, ``scheduler.pt``, ``rng.pt`` (python ``random``,
numpy, torch CPU and, when available, CUDA generator states) and ``trainer_state.json`` (whatever
dict the trainer passes: step, data cursor, best metric, baseline, ...). It is written into a
hidden temporary directory beside it, every file fsynced, then renamed into place, so a crash
never leaves a half-written ``checkpoint-NNNN``. Only the last ``keep_last`` checkpoints are kept,
never the one ``trainer_state["best_checkpoint"]`` names. A data-parallel run's checkpoint also
holds ``rng_ranks.pt``: the RNG states of all its ranks (:func:`load_rank_rng`).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

PREFIX = "checkpoint-"
BEST = "best"
STATE_FILE = "trainer_state.json"
RANK_RNG_FILE = "rng_ranks.pt"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, final: Path) -> None:
    """Atomically move the finished ``tmp`` tree to ``final`` (replacing an existing one)."""
    _fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch, CUDA), as ``rng.pt`` stores them."""
    return _rng_state()


def load_rank_rng(path: str | Path, rank: int) -> None:
    """Restore rank ``rank``'s RNG states from a data-parallel checkpoint's ``rng_ranks.pt``."""
    states = torch.load(Path(path) / RANK_RNG_FILE, weights_only=True)
    if not 0 <= rank < len(states):
        raise ValueError(f"{path}: RNG states of {len(states)} ranks, none for rank {rank}")
    _set_rng_state(states[rank])


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _step_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m and path.is_dir() and (path / STATE_FILE).is_file() else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-NNNN`` directories of ``output_dir``, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(s, p) for p in root.iterdir() if (s := _step_of(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def _prune(output_dir: Path, keep_last: int, protect: str | None) -> None:
    ckpts = list_checkpoints(output_dir)
    protected = Path(protect).name if protect else None
    for path in ckpts[: max(len(ckpts) - keep_last, 0)]:
        if path.name != protected:
            shutil.rmtree(path)


def save_checkpoint(output_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, trainer_state: dict[str, Any], keep_last: int = 3,
                    rank_rng: list[dict[str, Any]] | None = None) -> Path:
    """Write ``checkpoint-{step:04d}`` atomically and prune to the last ``keep_last`` (>= 1).

    ``rank_rng``: every rank's :func:`rng_state` (rank order) for a data-parallel run.

    ``trainer_state`` must be JSON-serialisable; ``step`` is stored in it. Returns the final path.
    """
    if keep_last < 1:
        raise ValueError("keep_last must be >= 1")
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        if rank_rng is not None:
            torch.save(rank_rng, tmp / RANK_RNG_FILE)
        state = dict(trainer_state, step=step)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
        _install(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep_last, trainer_state.get("best_checkpoint"))
    return final


def save_best(output_dir: str | Path, checkpoint: str | Path) -> Path:
    """Copy a saved checkpoint directory to ``<output_dir>/best`` atomically; returns that path."""
    src = Path(checkpoint)
    if not (src / STATE_FILE).is_file():
        raise FileNotFoundError(f"{src} is not a complete checkpoint")
    root = Path(output_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{BEST}.tmp-", dir=root))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        _install(tmp, root / BEST)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / BEST


def _load_weights(path: Path, model: torch.nn.Module) -> None:
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        result = set_peft_model_state_dict(model, load_peft_weights(str(path), device="cpu"))
        bad = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if bad:
            raise ValueError(f"{path}: adapter keys do not match the model: {bad[:3]}")
        return
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    result = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers())
    loaded = {params[k].data_ptr() for k in state if k in params}
    missing = [k for k in result.missing_keys if params[k].data_ptr() not in loaded]  # tied ones are fine
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")


def read_state(path: str | Path) -> dict[str, Any]:
    """The trainer state a checkpoint recorded; ``FileNotFoundError`` for an incomplete checkpoint."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore weights/adapter in place, the optimizer, scheduler and RNG states; return the trainer state."""
    path = Path(path)
    state = read_state(path)
    _load_weights(path, model)
    device = next(model.parameters()).device
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if restore_rng:
        _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return state
