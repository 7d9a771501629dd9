"""One rollout's bookkeeping, shared by the batched HF engine and the API path: run a model turn
through the environment, record the :class:`Turn`, decide whether the rollout goes on, and fill
the rubric, outcome reward and finish reason when it ends.

A failure inside one rollout (an exception from the environment factory, ``env.step``,
``env.finish`` or the judge) is isolated: that rollout finishes with reason ``error`` and
``rubric.rollout_error`` set; the others go on.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from inboxrl.agent.parsing import parse_tool_call
from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.email.types import ToolCall
from inboxrl.email.judge import is_idk
from inboxrl.email.rubric import Rubric, outcome_reward, process_reward

FINAL_ANSWER_TOOL = "return_final_answer"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


class Episode:
    """The environment and trajectory of one rollout (``done`` once finished)."""

    def __init__(self, scenario: Any, group_id: int, rollout_index: int,
                 env_factory: Callable[[Any], Any], max_turns: int) -> None:
        self.traj = Trajectory(scenario_id=str(scenario.id), group_id=group_id,
                               rollout_index=rollout_index)
        self.max_turns = max_turns
        self.done = False
        self.env: Any = None
        self._error: str | None = None
        self._started = time.perf_counter()
        self.tool_seconds = 0.0
        try:
            self.env = env_factory(scenario)
        except Exception as exc:
            self.fail(exc)

    def take_turn(self, text: str, num_tokens: int, call: ToolCall | None = None,
                  parse_error: str | None = None, parse: bool = True) -> str | None:
        """Record one model turn and execute its call (parsed from ``text`` when ``parse``).

        Returns the observation to show the model when the rollout goes on, or ``None`` when it
        has finished (answer, ``I don't know``, out of turns, or an isolated failure).
        """
        if parse:
            call, parse_error = parse_tool_call(text)
        turn = Turn(index=len(self.traj.turns), text=text, tool_call=call,
                    parse_error=parse_error, num_tokens=num_tokens)
        self.traj.turns.append(turn)
        started = time.perf_counter()
        try:
            result = self.env.step(call, parse_error)
        except Exception as exc:
            self.fail(exc)
            return None
        finally:
            self.tool_seconds += time.perf_counter() - started
        turn.tool_result = result.observation
        turn.events = list(result.events)
        turn.process_reward = process_reward(turn.events)
        if turn.parse_error is None and getattr(result, "error", None):
            turn.parse_error = result.error
        if result.done:
            self.finish(self._answer_reason(call))
            return None
        if len(self.traj.turns) >= self.max_turns:
            self.finish("max_turns")
            return None
        return result.observation

    def _answer_reason(self, call: ToolCall | None) -> str:
        reason = getattr(self.env, "finish_reason", None)
        if reason in ("answered", "idk"):
            return reason
        if call is not None and call.name == FINAL_ANSWER_TOOL:
            return "idk" if is_idk(call.arguments.get("answer")) else "answered"
        return "error"

    def fail(self, exc: BaseException) -> None:
        """Finish with reason ``error``, recording ``exc`` in ``rubric.rollout_error``."""
        self._error = describe(exc)
        self.finish("error")

    def finish(self, reason: str) -> None:
        """Fill rubric (``env.finish(reason)``), outcome reward, finish reason and timings.
        Idempotent: only the first call counts."""
        if self.done:
            return
        self.done = True
        rubric = Rubric()
        if self.env is not None:
            try:
                rubric = self.env.finish(reason)
            except Exception as exc:
                self._error = self._error or describe(exc)
                reason = "error"
                rubric = getattr(self.env, "rubric", None) or Rubric()
        if reason == "error":
            rubric.rollout_error = rubric.rollout_error or self._error or "error"
            if rubric.num_turns == 0:
                rubric.num_turns = len(self.traj.turns)
        traj = self.traj
        traj.rubric = rubric
        rescore(traj, self.max_turns)
        traj.finish_reason = reason
        traj.timings["rollout_s"] = time.perf_counter() - self._started
        traj.timings["tool_s"] = self.tool_seconds


def rescore(traj: Trajectory, max_turns: int) -> None:
    """Set the outcome reward from the rubric (again, once a late verdict has been recorded)."""
    traj.reward = outcome_reward(traj.rubric, max_turns)
