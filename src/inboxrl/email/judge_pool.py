"""Judge calls off the decoding path: a thread pool for a slow judge (the LLM judge) and the
step's wait for its verdicts, bounded by a budget.

:class:`ConcurrentJudge` wraps any judge. ``submit`` returns a future at once, so the
environment records a final answer without waiting and the batched decoder goes on with the
other rollouts while up to ``workers`` verdicts are requested concurrently.
Once the rollouts are generated, the rollout function asks each environment to ``settle`` its
verdict (:func:`wait_for_verdict`), all of them within ``budget_s`` seconds from then; an answer whose verdict did not come in time,
or whose judge failed (after its own timeout and retries), gets ``rubric.judge_error`` and is
left out of rewards statistics, advantages and the loss (docs/robustness.md).

Shutdown is bounded: the pool's threads are daemon threads (:class:`DaemonPool`, not a
``ThreadPoolExecutor``, whose threads the interpreter joins at exit), so a process never waits at
exit for an HTTP call to a hung judge. :meth:`ConcurrentJudge.close` (the end of a run or eval,
also on an error or Ctrl-C) cancels the verdicts not started, stops every retry, and makes later
``submit`` calls return a judge error at once; a call in flight is left to its own timeout and
its result dropped.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from inboxrl.email.judge import Judge, Verdict


class DaemonPool:
    """``workers`` daemon threads (started as work arrives) running submitted calls in order.

    Unlike ``ThreadPoolExecutor`` nothing joins the threads at interpreter exit: a call blocked on
    the network never holds up the exit of the process. :meth:`shutdown` cancels what has not
    started; calls already running end on their own (their results go to futures nobody reads)."""

    def __init__(self, workers: int, name: str = "pool"):
        self.workers, self.name = workers, name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            self._queue.put((future, fn, args))
            if self._idle == 0 and len(self._threads) < self.workers:
                t = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            else:
                self._idle = max(self._idle - 1, 0)
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as e:  # noqa: BLE001 - handed to whoever reads the future
                    future.set_exception(e)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Cancel every call not started and let the threads end; returns at once."""
        waiting = []
        with self._lock:
            self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    waiting.append(item[0])
            for _ in self._threads:
                self._queue.put(None)
        for future in waiting:  # outside the lock: cancel() runs the futures' callbacks
            future.cancel()


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
        self._pool: DaemonPool | None = None
        self._lock = threading.Lock()
        self._stops: dict[Future, threading.Event] = {}
        self.closed = False

    def judge(self, question: str, reference: str, answer: str) -> Verdict:
        return self.inner.judge(question, reference, answer)

    def submit(self, question: str, reference: str, answer: str) -> Future:
        """Start one verdict on the pool; the future's result is a :class:`Verdict` (never raises).
        After :meth:`close` the future holds a judge error at once."""
        stop = threading.Event()
        with self._lock:
            if self.closed:
                future: Future = Future()
                future.set_result(Verdict(None, "the judge was shut down (the run is ending)"))
                return future
            if self._pool is None:
                self._pool = DaemonPool(self.workers, name="judge")
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
        """Cancel the verdicts not started, stop every retry, refuse new verdicts; returns at once
        (an attempt in flight ends at its own timeout on a daemon thread). Idempotent."""
        with self._lock:
            self.closed = True
            for stop in self._stops.values():
                stop.set()
            pool, self._pool = self._pool, None
        if pool is not None:  # outside the lock: cancelled futures call _forget, which takes it
            pool.shutdown()

    def __enter__(self) -> "ConcurrentJudge":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def close_judge(judge: Any) -> None:
    """Close ``judge`` when it has threads to stop (:meth:`ConcurrentJudge.close`); else nothing."""
    close = getattr(judge, "close", None)
    if callable(close):
        close()


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
