"""A resumed run must be the run that wrote the checkpoint.

``--resume`` restores weights, optimizer, scheduler, RNG and the data cursor, so that steps
1..k, an interruption, then steps k+1..N equal one straight run. That only holds when the
settings are the same: a different learning rate, schedule length, group size, reward weight
or starting model silently makes a different run whose curve is then read as the original's.
Every checkpoint therefore records the run's settings (``Settings.flat()``, the same dict as
``config.json``), and a resume whose settings differ in anything but the fields marked ``free``
(where and how the run logs, evaluates and checkpoints, speed-only knobs) stops with one
message that lists the differences.
"""
from __future__ import annotations

from typing import Any, Mapping

from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import all_fields

SETTINGS_KEY = "settings"


def may_change_on_resume() -> frozenset[str]:
    """The settings marked ``free``: a resume may change them."""
    return frozenset(name for name, f in all_fields().items() if f.metadata["free"])


def settings_differences(now: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """``name=now (run: then)`` for each run-defining setting that differs from ``saved``."""
    free = may_change_on_resume()
    return [f"{k}={now[k]!r} (run: {saved[k]!r})" for k in sorted(now)
            if k in saved and k not in free and now[k] != saved[k]]


def check_resume_settings(now: Mapping[str, Any], trainer_state: Mapping[str, Any], checkpoint: str) -> None:
    """Raise :class:`ConfigError` when the resumed run's settings differ from the checkpoint's.

    Checkpoints written before settings were recorded carry none and are accepted as they are.
    """
    saved = trainer_state.get(SETTINGS_KEY)
    if not saved:
        return
    diffs = settings_differences(now, saved)
    if diffs:
        raise ConfigError(f"cannot resume from {checkpoint}: settings differ from the run that wrote it: "
                          f"{', '.join(diffs)}; resume with the run's settings (in its trainer_state.json), "
                          f"or start a new run (a new --output-dir or --overwrite-output-dir, or --init-from the checkpoint)",
                          same_on_every_rank=True)
