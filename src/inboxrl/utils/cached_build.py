"""Build a cached directory once, atomically, and remove what a killed build left behind.

The one pattern behind the user-level caches (the converted default model, the embedded default
dataset, warm starts). ``target`` is built into a hidden temporary sibling
``.NAME.XXXXXXXX[.tmp]`` and renamed into place, under an exclusive lock ``.NAME.lock``, so
concurrent processes build it once and nobody sees it half written. A build killed with SIGKILL
cannot clean up after itself: its temporary sibling stays (a converted model or warm start is
hundreds of MB). The next build of the same name, holding the lock (so no build of that name is
running), deletes such leftovers first. A target being replaced is renamed aside
(``.NAME.old-PID``) before it is deleted, so a kill never leaves a half-deleted target listed.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from inboxrl.utils.file_lock import file_lock


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _leftover_pattern(name: str) -> re.Pattern[str]:
    # mkdtemp's 8 random characters (optionally ".tmp"), or a replaced target moved aside.
    return re.compile(rf"^\.{re.escape(name)}\.(?:[A-Za-z0-9_]{{8}}(?:\.tmp)?|old-\d+|stale-\d+)$")


def leftovers(target: Path) -> list[Path]:
    """Hidden entries beside ``target`` that only a build of ``target`` creates (never its lock)."""
    if not target.parent.is_dir():
        return []
    pattern = _leftover_pattern(target.name)
    return sorted(p for p in target.parent.iterdir() if pattern.match(p.name))


def remove_leftovers(target: Path) -> int:
    """Delete :func:`leftovers` of ``target``; call only while holding its lock. Returns how many."""
    found = leftovers(target)
    for entry in found:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return len(found)


def _install(tmp: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(tmp, target)


def build_cached(target: Path, is_complete: Callable[[Path], bool], build: Callable[[Path], Any],
                 force: bool = False, tmp_suffix: str = "") -> tuple[bool, int]:
    """Make ``target`` complete: reuse it when ``is_complete(target)`` (unless ``force``), else run
    ``build(tmp)`` in a fresh temporary sibling and rename that into place.

    Returns ``(built, removed)``: whether this call built it, and how many leftovers of earlier
    killed builds it deleted. A failing ``build`` leaves no temporary directory and keeps the old
    ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path(target)):
        removed = remove_leftovers(target)
        if is_complete(target) and not force:
            return False, removed
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=tmp_suffix, dir=target.parent))
        try:
            build(tmp)
            _install(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True, removed
