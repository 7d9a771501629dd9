"""Jinja2 templates of the run viewer (package data, autoescaped) and page writing."""
from __future__ import annotations

import datetime as _dt
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from inboxrl.utils.atomic import atomic_write_bytes, atomic_write_text

FILTERED_COLOUR = "#e4e6ea"


@lru_cache(maxsize=1)
def _cmap():
    import matplotlib

    return matplotlib.colormaps["RdBu"]


def adv_colour(advantage: float, scale: float, kept: bool = True) -> str:
    """Heat-map colour of an advantage: red (negative) to blue (positive), white at 0, full
    colour at ``|advantage| = scale``; grey for a filtered group."""
    if not kept or not math.isfinite(advantage):
        return FILTERED_COLOUR
    from matplotlib.colors import to_hex

    x = max(-1.0, min(1.0, float(advantage) / scale if scale > 0 else 0.0))
    return to_hex(_cmap()(0.5 + 0.4 * x))  # 0.1..0.9 keeps the text readable


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("inboxrl.view", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["adv_colour"] = adv_colour
    env.filters["repr"] = lambda v: repr(float(v))
    return env


class PageWriter:
    """Renders templates into ``view_dir`` (each file written whole, then renamed into place)."""

    def __init__(self, view_dir: Path, run_dir: Path):
        self.view_dir = view_dir
        self.common = {"run_dir": str(run_dir), "run_name": run_dir.name,
                       "built_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}

    def page(self, rel: str, template: str, **context: Any) -> Path:
        depth = rel.count("/")
        html = environment().get_template(template).render(root="../" * depth, **self.common, **context)
        return atomic_write_text(self.view_dir / rel, html, fsync=False)

    def copy_asset(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.view_dir / "assets" / name, data, fsync=False)
