"""A policy served by an OpenAI-compatible ``/chat/completions`` endpoint (standard library only).

Used to evaluate hosted or locally served models (vLLM, llama.cpp server, ...) on the same
scenarios. Native ``tool_calls`` in the reply become ``ToolCall`` objects; a call whose
arguments are not a JSON object is not turned into a ``ToolCall``: its raw text is appended to
``ChatReply.text`` so the chat parser records the format error, exactly as for a local model.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from inboxrl.email.types import ToolCall

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIAPIError(RuntimeError):
    """The endpoint failed (after retries where retrying made sense); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class ChatReply:
    """One assistant reply.

    ``text``: the message content, plus the raw text of any malformed tool call.
    ``tool_calls``: the well-formed native tool calls, in order.
    ``raw_message``: the assistant message exactly as returned (to append to the history).
    ``tool_call_ids``: the server's id of each entry of ``tool_calls`` (``None`` when absent).
    """

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    raw_message: dict[str, Any] = field(default_factory=dict)
    tool_call_ids: list[str | None] = field(default_factory=list)


def _parse_tool_call(entry: Any) -> tuple[ToolCall | None, str]:
    """``(ToolCall, "")`` for a well-formed call, else ``(None, raw text of the call)``."""
    function = entry.get("function") if isinstance(entry, dict) else None
    if not isinstance(function, dict):
        return None, json.dumps(entry)
    name = function.get("name")
    raw_args = function.get("arguments", "{}")
    if isinstance(raw_args, dict):  # some servers send an object instead of a JSON string
        args: Any = raw_args
    else:
        try:
            args = json.loads(raw_args) if raw_args not in (None, "") else {}
        except (json.JSONDecodeError, TypeError):
            args = None
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        raw = raw_args if isinstance(raw_args, str) else json.dumps(raw_args)
        return None, '{"name": %s, "arguments": %s}' % (json.dumps(name), raw)
    return ToolCall(name=name, arguments=args), ""


def parse_reply(body: dict[str, Any]) -> ChatReply:
    """Turn a ``/chat/completions`` response body into a ``ChatReply``; bad shape -> error."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise OpenAIAPIError(f"response has no choices: {json.dumps(body)[:300]}")
    message = choices[0].get("message") or {}
    parts = [message.get("content") or ""]
    calls: list[ToolCall] = []
    ids: list[str | None] = []
    for entry in message.get("tool_calls") or []:
        call, raw = _parse_tool_call(entry)
        if call is not None:
            calls.append(call)
            ids.append(entry.get("id"))
        else:
            parts.append(raw)
    text = "\n".join(p for p in parts if p)
    return ChatReply(text=text, tool_calls=calls, finish_reason=choices[0].get("finish_reason"),
                     usage=dict(body.get("usage") or {}), raw_message=dict(message),
                     tool_call_ids=ids)


@dataclass
class OpenAIChatPolicy:
    """Client for ``{base_url}/chat/completions``.

    The API key is read from the environment variable ``api_key_env`` at each request and sent
    as ``Authorization: Bearer <key>``; when the variable is unset no header is sent (local
    servers). ``retries`` extra attempts follow a 5xx/408/409/429 status, a timeout or a
    connection error, waiting ``backoff * 2**attempt`` seconds; other 4xx fail at once.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    retries: int = 3
    temperature: float = 0.0
    max_tokens: int = 512
    backoff: float = 1.0

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, payload: bytes) -> dict[str, Any]:
        request = urllib.request.Request(self.url, data=payload, headers=self._headers(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OpenAIAPIError(f"{self.url} returned non-JSON: {raw[:200]!r}") from exc

    def _error_for_status(self, exc: urllib.error.HTTPError) -> OpenAIAPIError:
        try:
            detail = exc.read().decode("utf-8", "replace")[:500]
        except Exception:  # the body is best-effort context only
            detail = ""
        hint = ""
        if exc.code in (401, 403):
            hint = f" (check the API key in ${self.api_key_env})"
        return OpenAIAPIError(f"{self.url} returned HTTP {exc.code}{hint}: {detail}", exc.code)

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON with retries; returns the decoded JSON response."""
        payload = json.dumps(body).encode("utf-8")
        last: OpenAIAPIError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post_once(payload)
            except urllib.error.HTTPError as exc:
                last = self._error_for_status(exc)
                if exc.code not in RETRY_STATUSES:
                    raise last from exc
            except (TimeoutError, socket.timeout):
                last = OpenAIAPIError(f"{self.url} timed out after {self.timeout} s")
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last = OpenAIAPIError(f"{self.url} timed out after {self.timeout} s")
                else:
                    last = OpenAIAPIError(f"cannot reach {self.url}: {exc.reason}")
            except (ConnectionError, http.client.HTTPException) as exc:
                last = OpenAIAPIError(f"connection to {self.url} failed: {exc!r}")
        assert last is not None
        raise OpenAIAPIError(f"{last} (gave up after {self.retries + 1} attempts)", last.status)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None) -> ChatReply:
        """One chat completion. ``tools`` are OpenAI function schemas (e.g. ``TOOL_SCHEMAS``)."""
        body: dict[str, Any] = {
            "model": self.model, "messages": messages,
            "temperature": self.temperature if temperature is None else temperature,
            "max_tokens": self.max_tokens if max_tokens is None else max_tokens,
        }
        if tools:
            body["tools"] = tools
        if seed is not None:
            body["seed"] = seed
        return parse_reply(self.post(body))
