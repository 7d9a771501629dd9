"""Resumable checkpoints: ``<output_dir>/checkpoints/checkpoint-NNNN/``, listed only once complete.

A checkpoint directory holds the weights (``save_pretrained``: the LoRA adapter for a peft model,
the full weights otherwise), ``optimizer.pt``, ``scheduler.pt``, ``rng.pt`` (python ``random``,
numpy, torch CPU and, when available, CUDA generator states), ``trainer_state.json`` (whatever
dict the trainer passes: step, data cursor, best metric, baseline, ...) and, written last,
``manifest.json`` (every other file with its size).

Crash safety (docs/robustness.md):

* a checkpoint is written into a hidden ``.checkpoint-NNNN.tmp-*`` directory, every file fsynced,
  the manifest last, then renamed into place; replacing an existing one moves it aside to
  ``.checkpoint-NNNN.old-PID`` first (:func:`recover` puts it back if the new one never arrived);
* a directory counts as a checkpoint only when its manifest is there and every file it lists has
  its size (:func:`is_complete`); :func:`load_checkpoint` checks it again;
* pruning (the last ``keep_last`` are kept, and the one whose step ``protect_step`` names) first
  renames a checkpoint to ``.checkpoint-NNNN.trash-PID``, out of the listing, then deletes it;
* :func:`recover` (run at the start of a run, under the output directory's lock) removes every
  hidden temporary / trash / superseded entry left by a killed run.

A data-parallel run's checkpoint also holds ``rng_ranks.pt``: the RNG states of all its ranks
(:func:`load_rank_rng`).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from inboxrl.utils.faults import fault_point

PREFIX = "checkpoint-"
BEST = "best"
STATE_FILE = "trainer_state.json"
RANK_RNG_FILE = "rng_ranks.pt"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_NAME = re.compile(rf"^{PREFIX}(\d+)$")
# hidden entries a killed save / prune / install leaves: .<name>.tmp-XXXXXXXX (mkdtemp),
# .<name>.old-PID, .<name>.trash-PID; only for names inboxrl writes (a user's .notes.old-1 stays)
_HIDDEN = re.compile(r"^\.(?P<name>[^/]+?)\.(?:tmp-[a-z0-9_]{8}|(?P<pid_kind>old|trash)-\d+)$")
# what a killed inboxrl.utils.atomic write leaves: .<name>.XXXXXXXX.tmp (mkstemp)
_ATOMIC_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _ours(name: str, owned: tuple[str, ...]) -> bool:
    return name == BEST or bool(_NAME.match(name)) or name in owned


class CheckpointError(FileNotFoundError):
    """A checkpoint directory that is incomplete (its manifest is missing or does not match)."""


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    """fsync a directory (its entries: renames, creations, deletions)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(root: Path, step: int | None = None) -> None:
    """List every file under ``root`` with its size in ``root/manifest.json`` (fsynced)."""
    files = {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    body = json.dumps({"format": MANIFEST_FORMAT, "step": step, "files": files}, indent=1) + "\n"
    with open(root / MANIFEST, "w", encoding="utf-8") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())


def manifest_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete checkpoint (None when it is)."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (the save did not finish)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable {MANIFEST}: {type(e).__name__}"
    if STATE_FILE not in files:
        return f"{MANIFEST} does not list {STATE_FILE}"
    for name, size in files.items():
        try:
            actual = (path / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, the manifest says {size}"
    return None


def is_complete(path: str | Path) -> bool:
    return Path(path).is_dir() and manifest_problem(path) is None


def _install(tmp: Path, final: Path) -> None:
    """Atomically move the finished ``tmp`` tree to ``final`` (replacing an existing one)."""
    _fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        fsync_dir(final.parent)
        fault_point("best.replace_moved" if final.name == BEST else "ckpt.replace_moved")
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _discard(path: Path, point: str | None = None) -> None:
    """Rename ``path`` out of the listed namespace (``.NAME.trash-PID``), then delete it."""
    trash = path.with_name(f".{path.name}.trash-{os.getpid()}")
    os.replace(path, trash)
    fsync_dir(path.parent)
    if point:
        fault_point(point)
        files = sorted(p for p in trash.rglob("*") if p.is_file())
        if files:
            files[0].unlink()
        fault_point(point.replace("renamed", "partial"))
    shutil.rmtree(trash, ignore_errors=True)


def recover(root: str | Path, owned: tuple[str, ...] = ()) -> list[str]:
    """Clean what killed runs left in ``root`` (a checkpoints dir or the output dir); return what
    was done, one line each.

    ``.X.old-*`` whose ``X`` is missing (a kill between an install's two renames) is renamed
    back to ``X`` if it is complete; every other ``.X.tmp-*``, ``.X.old-*`` and ``.X.trash-*``
    is deleted, and so are the ``.NAME.XXXX.tmp`` files of a killed atomic write
    (:mod:`inboxrl.utils.atomic`) and a ``checkpoint-NNNN`` that is not complete. ``X`` is a
    checkpoint, ``best`` or one of ``owned`` (the run outputs the store moves aside): hidden entries
    of other names are not inboxrl's and stay. Call it only while holding the output directory's
    lock (:class:`inboxrl.utils.run_lock.RunLock`).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    done = []
    for path in sorted(root.iterdir()):
        m = _HIDDEN.match(path.name)
        if m is None or not _ours(m["name"], owned):
            if _ATOMIC_TMP.match(path.name) and path.is_file():
                path.unlink()
                done.append(f"removed {path.name}")
            continue
        target = root / m["name"]
        if m["pid_kind"] == "old" and not target.exists() and _ours(m["name"], ()) and is_complete(path):
            os.replace(path, target)
            done.append(f"restored {target.name} from {path.name}")
            continue
        remove(path)
        done.append(f"removed {path.name}")
    for path in sorted(root.iterdir()):
        if _NAME.match(path.name) and path.is_dir() and not is_complete(path):
            remove(path)
            done.append(f"removed incomplete {path.name} ({manifest_problem(path) or 'incomplete'})")
    if done:
        fsync_dir(root)
    return done


def remove(path: Path) -> None:
    """Delete a file, link or directory tree (what is not there is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    return int(m.group(1)) if m and is_complete(path) else None


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


def _prune(output_dir: Path, keep_last: int, protect_step: int | None) -> None:
    ckpts = list_checkpoints(output_dir)
    for path in ckpts[: max(len(ckpts) - keep_last, 0)]:
        if _step_of(path) != protect_step:
            _discard(path, "ckpt.prune_renamed")


def save_checkpoint(output_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, trainer_state: dict[str, Any], keep_last: int = 3,
                    protect_step: int | None = None, rank_rng: list[dict[str, Any]] | None = None,
                    full_state: tuple[dict, dict] | None = None) -> Path:
    """Write ``checkpoint-{step:04d}`` atomically and prune to the last ``keep_last`` (>= 1),
    never the one of step ``protect_step`` (the best checkpoint's).

    ``rank_rng``: every rank's :func:`rng_state` (rank order) for a data-parallel run.
    ``full_state``: the (weights, optimizer) state dicts to write instead of ``model``'s and
    ``optimizer``'s own (a sharded FSDP model: :mod:`inboxrl.grpo.checkpoint_fsdp`).

    ``trainer_state`` must be JSON-serialisable; ``step`` is stored in it. Returns the final path.
    """
    if keep_last < 1:
        raise ValueError("keep_last must be >= 1")
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        weights, optim_state = full_state if full_state is not None else (None, optimizer.state_dict())
        model.save_pretrained(tmp, **({} if weights is None else {"state_dict": weights}))
        fault_point("ckpt.partial")
        torch.save(optim_state, tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        if rank_rng is not None:
            torch.save(rank_rng, tmp / RANK_RNG_FILE)
        state = dict(trainer_state, step=step)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        write_manifest(tmp, step)
        fault_point("ckpt.before_install")
        _install(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point("ckpt.installed")
    _prune(root, keep_last, protect_step)
    return final


def save_best(output_dir: str | Path, checkpoint: str | Path,
              extra: Callable[[Path], None] | None = None) -> Path:
    """Copy a complete checkpoint to ``<output_dir>/best`` atomically; ``extra(tmp_dir)`` may add
    files (the tokenizer) before the manifest is rewritten and the copy renamed into place."""
    src = Path(checkpoint)
    problem = manifest_problem(src)
    if problem:
        raise CheckpointError(f"{src} is not a complete checkpoint: {problem}")
    root = Path(output_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{BEST}.tmp-", dir=root))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / MANIFEST).unlink()
        fault_point("best.partial")
        if extra is not None:
            extra(tmp)
        _fsync_tree(tmp)
        write_manifest(tmp, read_state(src).get("step"))
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
    """The trainer state a checkpoint recorded; ``FileNotFoundError`` when the directory is
    missing, :class:`CheckpointError` (one of them) when it is incomplete."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    problem = manifest_problem(path)
    if problem:
        raise CheckpointError(f"{path} is not a complete checkpoint: {problem}")
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, restore_rng: bool = True,
                    load_weights: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Restore weights/adapter in place, the optimizer, scheduler and RNG states; return the trainer state.
    ``load_weights(path)``, when given, restores the weights and the optimizer instead (FSDP)."""
    path = Path(path)
    state = read_state(path)
    if load_weights is not None:
        load_weights(path)
    else:
        _load_weights(path, model)
    device = next(model.parameters()).device
    if optimizer is not None and load_weights is None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if restore_rng:
        _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return state
