"""Run a function in a forked child that may SIGKILL itself at a named fault point."""
from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Callable

from inboxrl.utils.faults import ENV


def run_forked(fn: Callable[[], None], fault: str | None = None) -> int:
    """Fork, set ``$INBOXRL_FAULT`` in the child only, run ``fn`` there. Returns ``-signal`` when
    the child was killed by a signal, else its exit status (0: ``fn`` returned, 1: it raised)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            if fault:
                os.environ[ENV] = fault
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


KILLED = -signal.SIGKILL
