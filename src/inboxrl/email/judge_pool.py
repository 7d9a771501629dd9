"""Judge calls off the decoding path: a thread pool for a slow judge (the LLM judge) and the
step's wait for its verdicts, bounded by a budget.

:class:`ConcurrentJudge` wraps any judge. ``submit`` returns a future at once, so the
environment records a final answer without waiting and the batched decoder goes on with the
other rollouts while up to ``workers`` verdicts are requested concurrently.
Once the rollouts are generated, the rollout function asks each environment to ``settle`` its
verdict (:func:`wait_for_verdict`), all of them within ``budget_s`` seconds from then; an answer whose verdict did not come in time,
or whose judge failed (after its own timeout and retries), gets ``rubric.judge_error`` and is
left out of rewards statistics, advantages and the loss (docs/robustness.md).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from inboxrl.email.judge import Judge, Verdict


class ConcurrentJudge:
    """A judge whose calls run on a pool of ``workers`` threads (``judge`` still blocks); a step
    waits at most ``budget_s`` seconds (None: no limit) for its verdicts once its rollouts are done."""

    def __init__(self, judge: Judge, workers: int = 8, budget_s: float | None = None):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if budget_s is not None and not budget_s > 0:
            raise ValueError("budget_s must be > 0 or None")
        self.inner = judge
        self.workers = workers
        self.budget_s = budget_s  # how long a step waits for its verdicts once its rollouts are done
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stops: dict[Future, threading.Event] = {}

    def judge(self, question: str, reference: str, answer: str) -> Verdict:
        return self.inner.judge(question, reference, answer)

    def submit(self, question: str, reference: str, answer: str) -> Future:
        """Start one verdict on the pool; the future's result is a :class:`Verdict` (never raises)."""
        stop = threading.Event()
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="judge")
            future = self._pool.submit(self._call, question, reference, answer, stop)
            self._stops[future] = stop
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._stops.pop(future, None)

    def _call(self, question: str, reference: str, answer: str, stop: threading.Event) -> Verdict:
        try:
            if getattr(self.inner, "supports_stop", False):
                return self.inner.judge(question, reference, answer, stop=stop)
            return self.inner.judge(question, reference, answer)
        except Exception as e:  # a judge failure is reported, never scored as the model's
            return Verdict(None, f"{type(e).__name__}: {e}")

    def abandon(self, future: Future) -> None:
        """Nobody waits for ``future`` any more: cancel it if it has not started, else tell the
        judge to stop retrying it (an attempt in flight ends at its own timeout)."""
        future.cancel()
        with self._lock:
            stop = self._stops.get(future)
        if stop is not None:
            stop.set()

    def close(self) -> None:
        with self._lock:
            for stop in self._stops.values():
                stop.set()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def wait_for_verdict(judge: Any, future: Future, since: float) -> Verdict:
    """The verdict of ``future``, or a judge error when it is not there by ``since`` (a
    ``time.monotonic()`` value) + the judge's ``budget_s`` (the future is then abandoned)."""
    budget = getattr(judge, "budget_s", None)
    timeout = None if budget is None else max(since + budget - time.monotonic(), 0.0)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        if hasattr(judge, "abandon"):
            judge.abandon(future)
        return Verdict(None, f"no verdict within the step's judge budget ({budget:g} s)")
