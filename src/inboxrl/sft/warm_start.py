"""The warm start: a cached SFT checkpoint GRPO starts from (``inboxrl sft``, ``train --warm-start``).

:func:`ensure_warm_start` returns a plain model directory (merged weights + tokenizer, loadable
with ``load_model(path)`` / ``train --init-from PATH``). With LoRA the adapter is merged
(``merge_and_unload``) before saving, so GRPO's KL reference (its own adapter disabled) is the
warm-started model, not the original base.

Caching: the directory is ``<cache>/warm_start/<key>`` where ``key`` hashes everything the result
depends on (:func:`warm_start_key`: the model weights' identity, the data source and training
scenario ids, the SFT and rollout-budget settings, the seed, a format version). It is built in a
temporary sibling directory, the marker ``warm_start.json`` is written last, and the directory
is renamed into place (atomic), under an exclusive file lock so concurrent runs build it once.
A directory with the marker is reused as is; ``force=True`` rebuilds it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

MARKER = "warm_start.json"
FORMAT_VERSION = 5  # bump when demonstrations or training change in a way the key cannot see
KEY_FIELDS = ("dtype", "seed", "max_turns", "max_tokens", "max_context_tokens", "judge",
              "judge_model", "sft_num_demos", "sft_episodes_per_scenario", "sft_max_pattern_share",
              "sft_slip_prob", "sft_epochs", "sft_batch_size", "sft_learning_rate", "sft_use_lora",
              "sft_lora_r")


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


def warm_start_key(cfg: Any, data: Any, model_source: str) -> tuple[str, dict[str, Any]]:
    """``(hex key, the dict it hashes)`` for a warm start of ``model_source`` on ``data``."""
    material = {
        "version": FORMAT_VERSION,
        "model": _model_identity(model_source),
        "data": {"source": data.source, "db": str(data.db_path),
                 "train_ids": [s.id for s in data.train]},
        "settings": {k: getattr(cfg, k) for k in KEY_FIELDS},
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20], material


def cache_dir(cfg: Any) -> Path:
    """``cfg.sft_cache_dir``, else ``<inboxrl cache root>/warm_start``."""
    if getattr(cfg, "sft_cache_dir", ""):
        return Path(cfg.sft_cache_dir).expanduser()
    from inboxrl.policy.default_model import cache_root

    return cache_root() / "warm_start"


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _say(console: Any, message: str) -> None:
    (getattr(console, "info", None) or console.print)(message)


def settings_from_config(cfg: Any):
    """``(DemoSettings, SFTSettings)`` for ``cfg``."""
    from inboxrl.sft.demos import DemoSettings
    from inboxrl.sft.train import SFTSettings

    demos = DemoSettings(num_demos=cfg.sft_num_demos, episodes_per_scenario=cfg.sft_episodes_per_scenario,
                         seed=cfg.seed, max_turns=cfg.max_turns, max_new_tokens=cfg.max_tokens,
                         max_context_tokens=cfg.max_context_tokens,
                         max_pattern_share=cfg.sft_max_pattern_share)
    demos.agent_options["p_slip"] = cfg.sft_slip_prob
    sft = SFTSettings(epochs=cfg.sft_epochs, learning_rate=cfg.sft_learning_rate,
                      batch_size=cfg.sft_batch_size, warmup_steps=1, max_grad_norm=cfg.max_grad_norm,
                      token_budget=cfg.token_budget, share_prefix=cfg.share_prefix, seed=cfg.seed)
    return demos, sft


def load_sft_policy(cfg: Any, source: str):
    """The policy SFT trains: ``source`` weights, a fresh LoRA adapter when ``cfg.sft_use_lora``."""
    from inboxrl.agent.chat import ChatRenderer
    from inboxrl.email.tools import TOOL_SCHEMAS
    from inboxrl.policy.hf import HFPolicy, LoraSpec, load_model

    lora = LoraSpec(r=cfg.sft_lora_r, alpha=2 * cfg.sft_lora_r) if cfg.sft_use_lora else None
    model, tokenizer = load_model(source, dtype=cfg.dtype, lora=lora,
                                  gradient_checkpointing=cfg.gradient_checkpointing)
    return HFPolicy(model=model, tokenizer=tokenizer, renderer=ChatRenderer(tokenizer, TOOL_SCHEMAS))


def save_merged(model: Any, tokenizer: Any, path: Path) -> None:
    """Save ``model`` as a plain transformers directory: a peft model's adapter is merged first."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def _build(cfg: Any, data: Any, console: Any, source: str, tmp: Path, material: dict) -> dict:
    from inboxrl.sft.train import run_sft

    demo_settings, sft_settings = settings_from_config(cfg)
    policy = load_sft_policy(cfg, source)
    report = run_sft(policy, cfg, data, console, Path(cfg.output_dir) / "sft", demo_settings,
                     sft_settings, evaluate_before=cfg.sft_eval == "both",
                     evaluate_after=cfg.sft_eval != "none")
    save_merged(policy.model, policy.tokenizer, tmp)
    info = {"key_material": material, "report": asdict(report),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (tmp / MARKER).write_text(json.dumps(info, indent=2, default=str) + "\n")  # written last
    return info


def ensure_warm_start(cfg: Any, data: Any, console: Any, force: bool = False) -> Path:
    """The warm-start model directory for ``cfg`` and ``data`` (built, or reused from the cache).

    Guarantees: the returned directory holds a complete ``save_pretrained`` model and tokenizer
    and the marker ``warm_start.json`` (settings and the SFT report); it is never observed half
    written. Raises ``ValueError`` when no demonstration can be collected.
    """
    from inboxrl.run.model import model_source

    source = model_source(cfg)
    key, material = warm_start_key(cfg, data, source)
    root = cache_dir(cfg)
    target = root / key
    with _lock(root / f".{key}.lock"):
        if is_complete(target) and not force:
            _say(console, f"Warm start: reusing {target}")
            _report_cached(target, console)
            return target
        _say(console, f"Warm start: SFT of {cfg.model_name if not cfg.init_from else source} on "
                      f"reference-agent demonstrations -> {target}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            _build(cfg, data, console, source, tmp, material)
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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
