"""The warm-start cache: a merged SFT model directory GRPO starts from (``inboxrl sft``,
``train --warm-start``; the run itself is wired in :mod:`inboxrl.run.warm_start`).

The directory is ``<cache>/warm_start/<key>`` where ``key`` hashes everything the result depends
on (:func:`warm_start_key`: the model weights' identity, the data source and training scenario
ids, the SFT and rollout-budget settings, the seed, a format version). It is built in a
temporary sibling directory, the marker ``warm_start.json`` is written last, and the directory
is renamed into place (atomic), under an exclusive file lock so concurrent runs build it once;
the temporary directory of a killed build is deleted by the next build of that key.
A directory with the marker is reused as is; ``force=True`` rebuilds it. With LoRA the adapter
is merged (``merge_and_unload``) before saving, so GRPO's KL reference (its own adapter
disabled) is the warm-started model, not the original base.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from inboxrl.policy.default_model import cache_root
from inboxrl.utils.cached_build import build_cached

MARKER = "warm_start.json"
FORMAT_VERSION = 5  # bump when demonstrations or training change in a way the key cannot see


def _model_identity(source: str) -> dict[str, Any]:
    """The model's name plus, for a local directory or file, the sizes and mtimes of its files
    (so a retrained checkpoint at the same path gets a new key)."""
    p = Path(source)
    if not p.exists():
        return {"name": source}
    files = sorted(f for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    return {"name": str(p.resolve()),
            "files": [(str(f.relative_to(p)) if p.is_dir() else f.name, f.stat().st_size,
                       int(f.stat().st_mtime)) for f in files if f.suffix in (".safetensors", ".bin",
                                                                            ".gguf", ".json")]}


def warm_start_key(key_settings: Mapping[str, Any], data: Any, model_source: str) -> tuple[str, dict[str, Any]]:
    """``(hex key, the dict it hashes)`` for a warm start of ``model_source`` on ``data`` with the
    settings the result depends on (``key_settings``: name -> value)."""
    material = {
        "version": FORMAT_VERSION,
        "model": _model_identity(model_source),
        "data": {"source": data.source, "db": str(data.db_path),
                 "train_ids": [s.id for s in data.train]},
        "settings": dict(key_settings),
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20], material


def cache_dir(sft_cache_dir: str = "") -> Path:
    """``sft_cache_dir`` when set, else ``<inboxrl cache root>/warm_start``."""
    if sft_cache_dir:
        return Path(sft_cache_dir).expanduser()

    return cache_root() / "warm_start"


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


def _say(console: Any, message: str) -> None:
    (getattr(console, "info", None) or console.print)(message)


def save_merged(model: Any, tokenizer: Any, path: Path) -> None:
    """Save ``model`` as a plain transformers directory: a peft model's adapter is merged first."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def ensure_cached(root: Path, key: str, build: Callable[[Path], Any], console: Any, what: str,
                  force: bool = False) -> Path:
    """``root/key``: reused when complete (unless ``force``), else built by ``build(tmp)`` into a
    temporary sibling and renamed into place, under the key's lock
    (:func:`inboxrl.utils.cached_build.build_cached`).

    Guarantees: the returned directory holds whatever ``build`` wrote, including the marker it
    writes last; it is never observed half written, a failed rebuild leaves the old one, and the
    temporary directory of a build that was killed (SIGKILL) is deleted by the next one.
    """
    target = root / key

    def build_and_say(tmp: Path) -> None:
        _say(console, f"Warm start: SFT of {what} on reference-agent demonstrations -> {target}")
        build(tmp)

    built, removed = build_cached(target, is_complete, build_and_say, force=force)
    if removed:
        _say(console, f"Warm start: removed {removed} leftover(s) of an interrupted earlier build")
    if not built:
        _say(console, f"Warm start: reusing {target}")
        _report_cached(target, console)
    return target


def _report_cached(target: Path, console: Any) -> None:
    try:
        report = json.loads((target / MARKER).read_text()).get("report", {})
    except (OSError, ValueError):
        return
    after = report.get("after") or {}
    if after:
        proto = after.get("protocol", {})
        _say(console, f"Warm start (cached): after SFT accuracy {after.get('accuracy', 0):.3f}, "
                      f"valid calls {proto.get('valid_call_rate', 0):.1%}, "
                      f"search first {proto.get('first_search_rate', 0):.1%}")
