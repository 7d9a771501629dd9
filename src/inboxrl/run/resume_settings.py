"""A resumed run must be the run that wrote the checkpoint.

``--resume`` restores weights, optimizer, scheduler, RNG and the data cursor, so that steps
1..k, an interruption, then steps k+1..N equal one straight run. That only holds when the
settings are the same: a different learning rate, schedule length, group size, reward weight
or starting model silently makes a different run whose curve is then read as the original's.
Every checkpoint therefore records the run's settings, and a resume whose settings differ in
anything but where and how the run logs, evaluates and checkpoints stops with one message
that lists the differences.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from inboxrl.config import ConfigError, TrainConfig

SETTINGS_KEY = "settings"

# Settings a resume may change: output and logging, eval and checkpoint cadence, stopping
# rules, and speed-only knobs whose results agree up to rounding. Everything else defines the run.
MAY_CHANGE_ON_RESUME = frozenset({
    "output_dir", "verbose", "eval_steps", "save_steps", "keep_checkpoints", "patience",
    "target_accuracy", "wandb_project", "wandb_entity", "wandb_name", "wandb_mode",
    "check_template", "sft_eval", "sft_cache_dir", "judge_api_key_env", "rollout_batch_size",
    "token_budget", "share_prefix", "gradient_checkpointing", "dist_timeout",
})


def run_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings recorded in a checkpoint's trainer state."""
    return asdict(cfg)


def settings_differences(cfg: TrainConfig, saved: dict[str, Any]) -> list[str]:
    """``name=now (run: then)`` for each run-defining setting that differs from ``saved``."""
    now = run_settings(cfg)
    return [f"{k}={now[k]!r} (run: {saved[k]!r})" for k in sorted(now)
            if k in saved and k not in MAY_CHANGE_ON_RESUME and now[k] != saved[k]]


def check_resume_settings(cfg: TrainConfig, trainer_state: dict[str, Any], checkpoint: str) -> None:
    """Raise :class:`ConfigError` when the resumed run's settings differ from the checkpoint's.

    Checkpoints written before settings were recorded carry none and are accepted as they are.
    """
    saved = trainer_state.get(SETTINGS_KEY)
    if not saved:
        return
    diffs = settings_differences(cfg, saved)
    if diffs:
        raise ConfigError(f"cannot resume from {checkpoint}: settings differ from the run that wrote it: "
                          f"{', '.join(diffs)}; resume with the run's settings (in its trainer_state.json), "
                          f"or start a new run (--fresh, or --init-from the checkpoint)")
