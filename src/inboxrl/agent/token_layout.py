"""The token layout of a rollout, shared by the rollout engine (:mod:`inboxrl.agent.hf_engine`) and
the SFT demonstrations (:mod:`inboxrl.sft.demos`), so that a demonstration is laid out exactly as
a rollout that made the same calls:

* :func:`open_prompt`: the prompt segments (system, few-shot example, user, generation prompt)
  with their sources, and the prompt messages; the rollout ends with ``context_overflow`` when
  not even one token of a reply fits.
* :func:`turn_budget`: the new tokens the next turn may take.
* :func:`append_result`: after a turn that the rollout goes on from, the end of the turn, the tool
  result and the next generation prompt (``renderer.after_turn_segments``), checked against the
  context budget first (room for the result and one token); a result that does not fit ends the
  rollout with ``context_overflow`` and appends nothing.

Renderer failures are isolated as the episode's ``error`` (:meth:`Episode.fail`).
"""
from __future__ import annotations

from typing import Any

from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.episode import Episode


def _extend(ep: Episode, segments: list[tuple[list[int], str]]) -> list[int]:
    added: list[int] = []
    for ids, source in segments:
        ep.traj.append(ids, source)
        added += ids
    return added


def open_prompt(ep: Episode, renderer: ChatRenderer, scenario: Any, max_context_tokens: int) -> list[int] | None:
    """Append the prompt of ``scenario`` to ``ep``'s trajectory; the appended ids, or None when
    the episode finished (renderer failure or context overflow)."""
    try:
        segments = renderer.prompt_segments(scenario)
        ep.traj.messages = renderer.prompt_messages(scenario)
    except Exception as exc:  # a template that cannot render this scenario: this rollout only
        ep.fail(exc)
        return None
    added = _extend(ep, segments)
    if len(ep.traj.token_ids) + 1 > max_context_tokens:
        ep.finish("context_overflow")
        return None
    return added


def turn_budget(ep: Episode, max_new_tokens: int, max_context_tokens: int) -> int:
    """New tokens the next turn may take: the per-turn limit or the context left."""
    return min(max_new_tokens, max_context_tokens - len(ep.traj.token_ids))


def append_result(ep: Episode, renderer: ChatRenderer, stopped_on_eos: bool, observation: str,
                  max_context_tokens: int) -> list[int] | None:
    """Append the end of the turn, the tool result and the next generation prompt; the appended
    ids, or None when the episode finished (renderer failure or context overflow)."""
    try:
        segments = renderer.after_turn_segments(stopped_on_eos, observation)
    except Exception as exc:
        ep.fail(exc)
        return None
    if len(ep.traj.token_ids) + sum(len(ids) for ids, _ in segments) + 1 > max_context_tokens:
        ep.finish("context_overflow")
        return None
    added = _extend(ep, segments)
    ep.traj.messages.append({"role": "tool", "content": observation})
    return added
