"""The one file-lock helper: an exclusive ``fcntl.flock`` held for the duration of a block.

Used wherever concurrent processes must not build the same cached artefact twice (the default
model's conversion, a warm start). The lock file is created if needed and left in place (an
unlocked lock file is harmless); the lock is released when the block ends or the process dies.
"""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def file_lock(path: str | Path, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` inside the block; ``blocking=False`` raises
    ``BlockingIOError`` at once when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
