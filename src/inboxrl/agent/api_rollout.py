"""Rollouts of a policy behind an OpenAI-compatible API: messages in, a reply out, turn by turn
per rollout, rollouts spread over a thread pool. There are no token ids: the trajectories hold
turns, messages, rubric and reward only.

The model gets the native-protocol system prompt, the user question and the tool schemas
(``tools=``). A native tool call in the reply is preferred; otherwise the reply text is parsed
(:func:`inboxrl.agent.parsing.parse_tool_call`). Only the first call is executed; the assistant
message is appended with that call only, followed by its ``tool`` message; a turn without a
usable native call gets its observation back as a ``user`` message.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from inboxrl.agent import prompts
from inboxrl.agent.episode import Episode
from inboxrl.agent.parsing import parse_tool_call
from inboxrl.agent.trajectory import Trajectory

DEFAULT_CONCURRENCY = 8


def _default_schemas() -> list[dict[str, Any]]:
    from inboxrl.email.tools import TOOL_SCHEMAS

    return list(TOOL_SCHEMAS)


def request_seed(seed: int, group_id: int, rollout_index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{group_id}:{rollout_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _assistant_message(reply: Any, turn: int) -> tuple[dict[str, Any], str | None]:
    """The assistant message to keep in the history (with its first well-formed native call
    only) and that call's id (``None`` when the reply has no native call)."""
    raw = getattr(reply, "raw_message", None) or {}
    if not reply.tool_calls:
        return {"role": "assistant", "content": reply.text or ""}, None
    call = reply.tool_calls[0]
    ids = list(getattr(reply, "tool_call_ids", None) or [])
    call_id = (ids[0] if ids else None) or f"call_{turn}"
    message = {"role": "assistant", "content": raw.get("content") or "",
               "tool_calls": [{"id": call_id, "type": "function", "function": {
                   "name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}]}
    return message, call_id


def run_api_episode(policy: Any, request: Any, env_factory: Callable[[Any], Any], settings: Any,
                    tool_schemas: list[dict[str, Any]]) -> Trajectory:
    """Run one rollout to completion against the API policy."""
    ep = Episode(request.scenario, request.group_id, request.rollout_index, env_factory,
                 settings.max_turns)
    messages = ep.traj.messages = [
        {"role": "system", "content": prompts.NATIVE_SYSTEM_PROMPT},
        {"role": "user", "content": prompts.scenario_user_message(request.scenario)}]
    seed = request_seed(settings.seed, request.group_id, request.rollout_index)
    while not ep.done:
        try:
            reply = policy.complete(messages, tools=tool_schemas,
                                    temperature=0.0 if settings.greedy else settings.temperature,
                                    max_tokens=settings.max_new_tokens, seed=seed + len(ep.traj.turns))
        except Exception as exc:
            ep.fail(exc)
            break
        message, call_id = _assistant_message(reply, len(ep.traj.turns))
        if reply.tool_calls:
            call, error = reply.tool_calls[0], None
        else:
            call, error = parse_tool_call(reply.text or "")
        usage = getattr(reply, "usage", None) or {}
        messages.append(message)
        observation = ep.take_turn(reply.text or "", int(usage.get("completion_tokens") or 0),
                                   call=call, parse_error=error, parse=False)
        if observation is None:
            break
        if call_id is not None:
            messages.append({"role": "tool", "tool_call_id": call_id, "content": observation})
        else:
            messages.append({"role": "user", "content": observation})
    return ep.traj


def run_api_rollouts(policy: Any, requests: Sequence[Any], env_factory: Callable[[Any], Any],
                     settings: Any, on_finish: Callable[[Trajectory], None]) -> list[Trajectory]:
    """All rollouts, ``settings.batch_size`` (default 8) at a time; results in request order."""
    schemas = _default_schemas()
    workers = max(1, min(len(requests), settings.batch_size or DEFAULT_CONCURRENCY))

    def one(req: Any) -> Trajectory:
        traj = run_api_episode(policy, req, env_factory, settings, schemas)
        on_finish(traj)
        return traj

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, requests))
