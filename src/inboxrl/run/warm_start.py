"""The warm start of a run: SFT of the policy on reference-agent demonstrations, cached.

:func:`ensure_warm_start` returns a plain model directory (merged weights + tokenizer, loadable
with ``load_model(path)`` / ``train --init-from PATH``), built by :func:`inboxrl.sft.train.run_sft`
and cached by :mod:`inboxrl.sft.warm_start` under a key of everything the result depends on.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from inboxrl.agent.chat import ChatRenderer
from inboxrl.email.tools import TOOL_SCHEMAS
from inboxrl.email.judge_pool import close_judge
from inboxrl.grpo.evaluation import eval_settings
from inboxrl.policy.hf import HFPolicy
from inboxrl.policy.loading import LoraSpec, load_model
from inboxrl.run.env import make_env_factory, make_run_judge
from inboxrl.run.model import model_source
from inboxrl.settings.sections import ModelConfig, SFTConfig, Settings
from inboxrl.sft import warm_start as cache
from inboxrl.sft.demos import DemoSettings
from inboxrl.sft.train import SFTSettings, run_sft

# the settings a warm start's result depends on (the cache key)
KEY_FIELDS = ("dtype", "seed", "max_turns", "max_tokens", "max_context_tokens", "judge",
              "judge_model", "sft_num_demos", "sft_episodes_per_scenario", "sft_max_pattern_share",
              "sft_slip_prob", "sft_epochs", "sft_batch_size", "sft_learning_rate", "sft_use_lora",
              "sft_lora_r")


def key_settings(settings: Settings) -> dict[str, Any]:
    flat = settings.flat()
    return {k: flat[k] for k in KEY_FIELDS}


def settings_from_config(settings: Settings) -> tuple[DemoSettings, SFTSettings]:
    """``(DemoSettings, SFTSettings)`` of a run's ``sft``, ``rollout``, ``update`` and ``run`` sections."""
    sft, rollout, seed = settings.sft, settings.rollout, settings.run.seed
    demos = DemoSettings(num_demos=sft.sft_num_demos, episodes_per_scenario=sft.sft_episodes_per_scenario,
                         seed=seed, max_turns=rollout.max_turns, max_new_tokens=rollout.max_tokens,
                         max_context_tokens=rollout.max_context_tokens,
                         max_pattern_share=sft.sft_max_pattern_share)
    demos.agent_options["p_slip"] = sft.sft_slip_prob
    train = SFTSettings(epochs=sft.sft_epochs, learning_rate=sft.sft_learning_rate,
                        batch_size=sft.sft_batch_size, warmup_steps=1, max_grad_norm=settings.update.max_grad_norm,
                        token_budget=settings.update.token_budget, share_prefix=settings.update.share_prefix,
                        seed=seed)
    return demos, train


def load_sft_policy(model: ModelConfig, sft: SFTConfig, source: str) -> HFPolicy:
    """The policy SFT trains: ``source`` weights, a fresh LoRA adapter when ``sft.sft_use_lora``."""
    lora = LoraSpec(r=sft.sft_lora_r, alpha=2 * sft.sft_lora_r) if sft.sft_use_lora else None
    net, tokenizer = load_model(source, dtype=model.dtype, lora=lora,
                                gradient_checkpointing=model.gradient_checkpointing)
    return HFPolicy(model=net, tokenizer=tokenizer, renderer=ChatRenderer(tokenizer, TOOL_SCHEMAS))


def _build(settings: Settings, data: Any, console: Any, source: str, tmp: Path, material: dict) -> dict:
    run, sft = settings.run, settings.sft
    demo_settings, sft_settings = settings_from_config(settings)
    policy = load_sft_policy(settings.model, sft, source)
    judge = make_run_judge(settings.judge, run.output_dir)
    try:
        report = run_sft(policy, data, make_env_factory(data.db_path, judge, settings.rollout.max_turns), judge,
                         eval_settings(settings.rollout, settings.eval, run.seed), console,
                         Path(run.output_dir) / "sft", demo_settings, sft_settings,
                         evaluate_before=sft.sft_eval == "both", evaluate_after=sft.sft_eval != "none")
    finally:  # a concurrent judge's threads stop (also on an error or Ctrl-C)
        close_judge(judge)
    cache.save_merged(policy.model, policy.tokenizer, tmp)
    info = {"key_material": material, "report": asdict(report),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (tmp / cache.MARKER).write_text(json.dumps(info, indent=2, default=str) + "\n")  # written last
    return info


def ensure_warm_start(settings: Settings, data: Any, console: Any, force: bool = False) -> Path:
    """The warm-start model directory for ``settings`` and ``data`` (built, or reused from the cache).

    Guarantees: the returned directory holds a complete ``save_pretrained`` model and tokenizer
    and the marker ``warm_start.json`` (settings and the SFT report); it is never observed half
    written. Raises ``ConfigError`` when no demonstration can be collected.
    """
    source = model_source(settings.model)
    key, material = cache.warm_start_key(key_settings(settings), data, source)
    what = source if settings.model.init_from else settings.model.model_name
    return cache.ensure_cached(cache.cache_dir(settings.sft.sft_cache_dir), key,
                               lambda tmp: _build(settings, data, console, source, tmp, material),
                               console, what, force=force)
