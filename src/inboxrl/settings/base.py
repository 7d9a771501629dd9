"""What every settings section shares: the field helper, its checks, and value coercion.

A section is a frozen dataclass whose fields are declared with :func:`setting`: a default, the
help text shown by ``--help``, the environment variable existing ``.env`` files use, optional
``choices``, a range ``check`` and whether a resumed run may change it (``free``). Building a
section validates it; an invalid value raises :class:`ConfigError` naming the setting.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, ClassVar

# check name -> (predicate, what the message says the value must be)
CHECKS = {
    "positive": (lambda v: v >= 1, ">= 1"),
    "nonneg": (lambda v: v >= 0, ">= 0"),
    "gt0": (lambda v: v > 0, "> 0"),
    "unit": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "prob": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting.

    ``same_on_every_rank``: raised by a check every rank of a multi-process run makes on the same
    inputs (the resumed checkpoint's settings and process count), so rank 0 alone reports it.
    """

    def __init__(self, message: str, same_on_every_rank: bool = False):
        super().__init__(message)
        self.same_on_every_rank = same_on_every_rank


def setting(default: Any, help: str, env: str | None = None, choices: tuple | None = None,
            check: str | None = None, free: bool = False) -> Any:
    """A section field. ``free``: a resumed run may change it (output, logging, cadence, speed-only
    knobs); every other setting defines the run (see :mod:`inboxrl.settings.resume`)."""
    if check is not None and check not in CHECKS:
        raise ValueError(f"unknown check {check!r}")
    return field(default=default, metadata={"help": help, "env": env, "choices": choices,
                                            "check": check, "free": free})


class Section:
    """Base of the settings sections: validates every field when the section is built."""

    title: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number (got {value!r})")
            check = f.metadata.get("check")
            if check:
                ok, must = CHECKS[check]
                if not ok(value):
                    raise ConfigError(f"{f.name} must be {must} (got {value!r})")
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)} (got {value!r})")
        self.check()

    def check(self) -> None:
        """Rules across fields of the section (override)."""


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError


def _to_int(raw: Any) -> int:
    if isinstance(raw, float) and not raw.is_integer():
        raise ValueError
    return int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)


def coerce(name: str, typ: Any, raw: Any, source: str) -> Any:
    """Convert ``raw`` (a string from the environment/CLI or a YAML value) to the field's type."""
    typ = {"bool": bool, "int": int, "float": float, "str": str}.get(typ, typ) if isinstance(typ, str) else typ
    try:
        if typ is bool:
            return _to_bool(raw)
        if typ is int:
            return _to_int(raw)
        if typ is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number (got {raw!r} from {source})")
            return value
        return "" if raw is None else str(raw)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        kind = {bool: "a boolean (true/false)", int: "an integer", float: "a number"}.get(typ, "a string")
        raise ConfigError(f"{name} must be {kind} (got {raw!r} from {source})") from None
