"""Tool-call parsing: model text -> one :class:`ToolCall` or a short parse error.

Accepted forms (checked in this order):

1. ``<tool_call>{json}</tool_call>`` blocks (the native format of Qwen-style chat templates; a
   block left open because generation stopped is parsed up to the end of the text);
2. a fenced ```` ```json ```` (or bare ```` ``` ````) block;
3. a bare JSON object anywhere in the text: the first balanced ``{...}``.

The JSON object must be ``{"name": str, "arguments": dict}``; ``"parameters"`` is accepted as an
alias of ``"arguments"``, the arguments may also be given as a JSON *string* holding an object,
and missing arguments mean ``{}`` (the environment then reports any missing required argument
as ``bad_arguments``). The OpenAI shape ``{"function": {"name": ..., "arguments": ...}}`` is
accepted too.

**Only the first call of a turn is executed**: text after the first complete call (a second
``<tool_call>`` block, a second JSON object) is ignored. Anything else returns
``(None, "unparseable: <short reason>")``. :func:`parse_tool_call` never raises and does bounded
work: only the first :data:`MAX_SCAN_CHARS` characters of the text are looked at.
"""
from __future__ import annotations

import json
import re
from typing import Any

from inboxrl.email.types import ToolCall

MAX_SCAN_CHARS = 65_536  # longer texts are truncated before scanning
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def balanced_object_end(text: str, start: int) -> int:
    """Index just past the JSON object that opens at ``text[start] == "{"``, or -1 when the
    object does not close within ``text``. Braces inside JSON strings (with ``\\`` escapes)
    are skipped. Linear in ``len(text) - start``."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def first_object_closed(text: str) -> bool:
    """True when ``text`` contains a ``{`` whose balanced JSON object has closed (the stop
    condition of the bare-JSON tool protocol)."""
    start = text.find("{")
    return start >= 0 and balanced_object_end(text, start) >= 0


def _first_object(text: str) -> tuple[str | None, str | None]:
    start = text.find("{")
    if start < 0:
        return None, "no JSON object found"
    end = balanced_object_end(text, start)
    if end < 0:
        return None, "JSON object is not closed"
    return text[start:end], None


def _candidate(text: str) -> tuple[str | None, str | None]:
    """The JSON text of the first call, by the precedence in the module docstring."""
    open_at = text.find(TOOL_CALL_OPEN)
    if open_at >= 0:
        body = text[open_at + len(TOOL_CALL_OPEN):]
        close_at = body.find(TOOL_CALL_CLOSE)
        return _first_object(body if close_at < 0 else body[:close_at])
    fence = _FENCE.search(text)
    if fence is not None and "{" in fence.group(1):
        return _first_object(fence.group(1))
    return _first_object(text)


def _to_call(obj: Any) -> tuple[ToolCall | None, str | None]:
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    if "name" not in obj and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, "missing or non-string \"name\""
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if args is None:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):
            return None, "\"arguments\" string is not valid JSON"
    if not isinstance(args, dict):
        return None, f"\"arguments\" must be an object, got {type(args).__name__}"
    return ToolCall(name=name.strip(), arguments=args), None


def parse_tool_call(text: Any) -> tuple[ToolCall | None, str | None]:
    """Parse the first tool call in ``text``.

    Returns ``(call, None)`` on success and ``(None, "unparseable: <reason>")`` otherwise.
    Never raises (non-string input is an error too); at most :data:`MAX_SCAN_CHARS`
    characters are scanned.
    """
    try:
        if not isinstance(text, str):
            return None, "unparseable: model output is not text"
        json_text, error = _candidate(text[:MAX_SCAN_CHARS])
        if json_text is None:
            return None, f"unparseable: {error}"
        try:
            obj = json.loads(json_text)
        except (ValueError, RecursionError) as exc:
            return None, f"unparseable: invalid JSON ({str(exc)[:80]})"
        call, error = _to_call(obj)
        return (call, None) if call is not None else (None, f"unparseable: {error}")
    except Exception as exc:  # defensive: model text must never crash a rollout
        return None, f"unparseable: {type(exc).__name__}"
