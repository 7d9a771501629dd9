"""One run per output directory: an exclusive ``fcntl.flock`` on ``{output_dir}/.inboxrl.lock``.

The lock belongs to the open file, so the kernel releases it when the process exits in any way
(SIGKILL included): a killed run never leaves a stale lock. The file keeps the holder's pid so
the refusal can name it.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".inboxrl.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the output directory's lock."""


class RunLock:
    """``with RunLock(dir):`` or ``acquire()`` / ``release()``; raises :class:`RunLockedError`."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"output_dir {self.path.parent} is in use by another run (pid {holder}; lock "
                f"{self.path}): wait for it to finish or choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a dropped lock object releases its lock (the process may go on)
        try:
            self.release()
        except Exception:
            pass

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
