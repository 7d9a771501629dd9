"""The one rollout function for training (seeded sampling) and evaluation (greedy).

:func:`run_rollouts` runs every request to completion and returns one :class:`Trajectory` per
request, in request order (:func:`run_rollout_batches` several batches, a concurrent judge's
verdicts settled once after the last), with turns, rubric (``env.finish``), outcome reward, per-turn process
rewards, finish reason (``answered | idk | max_turns | context_overflow | error``), timings and
the chat view (``messages``).

* A transformers policy (``.model``, ``.tokenizer``, optional ``.renderer``) runs on the batched
  KV-cached engine (:mod:`inboxrl.agent.hf_engine`): token-faithful ids, per-token sources and
  sampling log-probs (log pi at temperature 1, see :mod:`inboxrl.agent.sampling`).
* A vLLM policy (``.vllm``, a :class:`inboxrl.agent.vllm_backends.VLLMSampler`, with the trainer's
  ``.tokenizer`` and ``.renderer``) runs on vLLM (:mod:`inboxrl.agent.vllm_engine`, GPU): token
  ids in, sampled ids and their log-probs out, the same turn logic; a colocated engine is woken
  for the rollouts and put back to sleep after them.
* An API policy (``.complete(messages, tools, temperature, max_tokens, seed)``) runs turn by
  turn per rollout on a thread pool (:mod:`inboxrl.agent.api_rollout`); its trajectories have
  no token ids.

Only the first tool call of each model turn is executed. ``env_factory(scenario)`` builds a
fresh environment (``step``/``finish`` as :class:`inboxrl.email.env.EmailTaskEnv`) per rollout.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from inboxrl.agent.episode import rescore
from inboxrl.agent.trajectory import Trajectory
from inboxrl.email.types import Scenario
from inboxrl.settings.sections import RolloutConfig


@dataclass
class RolloutSettings:
    """How rollouts are generated.

    ``max_new_tokens`` is per turn; ``max_context_tokens`` bounds prompt + everything appended
    (overflow ends the rollout with ``context_overflow``). ``greedy`` (evaluation) ignores
    temperature/top-p. ``check_template`` re-renders every finished trajectory and raises
    :class:`inboxrl.agent.chat.TemplateError` on a mismatch (tests; optional in runs).
    ``batch_size`` caps how many rollouts decode together (None: all; for API policies, the
    number of concurrent requests, default 8).
    """

    max_turns: int = 4
    max_new_tokens: int = 128
    max_context_tokens: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    seed: int = 0
    check_template: bool = False
    progress: bool = True
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_new_tokens < 1 or self.max_context_tokens < 2:
            raise ValueError("max_turns, max_new_tokens must be >= 1 and max_context_tokens >= 2")
        if not self.greedy and self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use greedy=True for arg-max decoding)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1 or None")

    @classmethod
    def from_config(cls, rollout: RolloutConfig, *, temperature: float, top_p: float, seed: int) -> "RolloutSettings":
        """The one mapping of the ``rollout`` settings section to rollouts: the budget, batch size and
        template check from the section; ``temperature`` 0 means greedy (evaluation)."""
        greedy = temperature == 0
        return cls(max_turns=rollout.max_turns, max_new_tokens=rollout.max_tokens,
                   max_context_tokens=rollout.max_context_tokens, temperature=1.0 if greedy else temperature,
                   top_p=top_p, greedy=greedy, seed=seed, check_template=rollout.check_template,
                   batch_size=rollout.rollout_batch_size or None)


@dataclass
class RolloutRequest:
    """One rollout to run: a scenario, its GRPO group and its index in the group."""

    scenario: Scenario
    group_id: int = 0
    rollout_index: int = 0


class _Progress:
    """A thread-safe tqdm bar over finished rollouts (no bar when disabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bar = None
        if enabled and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="rollouts", unit="rollout", leave=False)

    def __call__(self, _traj: Trajectory) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def is_api_policy(policy: Any) -> bool:
    """An API policy has ``complete``; a transformers policy has a ``tokenizer`` and a model."""
    return callable(getattr(policy, "complete", None)) and not hasattr(policy, "tokenizer")


def run_rollouts(policy: Any, requests: Sequence[RolloutRequest],
                 env_factory: Callable[[Scenario], Any],
                 settings: RolloutSettings | None = None) -> list[Trajectory]:
    """Run ``requests`` with ``policy``; returns trajectories in request order (see module doc)."""
    return run_rollout_batches(policy, [(requests, settings or RolloutSettings())], env_factory)[0]


def run_rollout_batches(policy: Any, batches: Sequence[tuple[Sequence[RolloutRequest], RolloutSettings]],
                        env_factory: Callable[[Scenario], Any]) -> list[list[Trajectory]]:
    """Run several batches one after the other, each with its own settings (a step's micro-batches,
    each seeded apart), then settle a concurrent judge's verdicts once for all of them: the judge's
    step budget bounds the whole step's wait, and one batch's verdicts are computed while the next
    batch decodes. Returns each batch's trajectories in request order."""
    envs: list[Any] = []

    def factory(scenario: Scenario) -> Any:
        env = env_factory(scenario)
        envs.append(env)  # list.append is atomic: API rollouts build envs on threads
        return env

    results = [_generate(policy, list(requests), factory, settings) for requests, settings in batches]
    settled = settle_verdicts(envs)
    for trajectories, (_, settings) in zip(results, batches):
        for t in trajectories:
            if id(t.rubric) in settled:
                rescore(t, settings.max_turns)
    return results


def _generate(policy: Any, requests: list[RolloutRequest], factory: Callable[[Scenario], Any],
              settings: RolloutSettings) -> list[Trajectory]:
    if not requests:
        return []
    progress = _Progress(len(requests), settings.progress)
    try:
        if is_api_policy(policy):
            from inboxrl.agent.api_rollout import run_api_rollouts

            return run_api_rollouts(policy, requests, factory, settings, progress)
        if getattr(policy, "vllm", None) is not None:
            return _run_vllm(policy, requests, factory, settings, progress)
        from inboxrl.agent.hf_engine import HFEngine

        return HFEngine(policy, settings, progress).run(requests, factory)
    finally:
        progress.close()


def settle_verdicts(envs: Sequence[Any]) -> set[int]:
    """Once every rollout is generated, collect the verdicts a concurrent judge is still computing
    (envs with ``settle(since)``: each waits at most what is left of its judge's step budget
    counted from ``since``, one moment for all); returns the ids of the rubrics that got one (their
    rollouts are re-scored by the caller)."""
    since = time.monotonic()
    settled = set()
    for env in envs:
        settle = getattr(env, "settle", None)
        if settle is not None and settle(since):
            settled.add(id(env.rubric))
    return settled


def _run_vllm(policy: Any, requests: list[RolloutRequest], env_factory: Callable[[Scenario], Any],
              settings: RolloutSettings, progress: _Progress) -> list[Trajectory]:
    from inboxrl.agent.vllm_engine import VLLMEngine

    backend = policy.vllm.backend
    backend.wake()
    try:
        return VLLMEngine(backend, policy.tokenizer, policy.renderer, settings, progress).run(requests, env_factory)
    finally:
        backend.sleep()
