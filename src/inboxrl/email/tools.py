"""The three tools of the email task (DESIGN.md §4): schemas, argument validation, rendering.

Validation functions are pure: each takes the model's raw JSON arguments and returns either a
clean, typed arguments object or a :class:`ToolError` whose message is shown to the model.

Leniency, decided once here (the schemas show the model the strict form):

* ``keywords`` given as one string is accepted and split on whitespace (small models often do
  this); numbers inside the list are accepted as their text; empty strings are dropped; an empty
  result is an error.
* ``max_results`` may be an integer, an integral float (``5.0``) or a string of digits (``"5"``);
  anything outside 1..10 is an error (never silently clamped). Absent or null means 10.
* Optional string arguments that are null or ``""`` count as absent.
* Dates must be ``YYYY-MM-DD`` and a real calendar date; ``sent_after`` later than
  ``sent_before`` is an error.
* ``sources`` given as one string is accepted as a one-element list; ``answer`` given as a
  number is accepted as its text.
* Unknown arguments and missing required ones are errors.

The inbox is never an argument: the environment injects the scenario's inbox.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from inboxrl.email.types import Email, SearchHit

SEARCH, READ, ANSWER = "search_emails", "read_email", "return_final_answer"
TOOL_NAMES = (SEARCH, READ, ANSWER)
MAX_RESULTS = 10
MAX_KEYWORDS = 20
MAX_ARG_CHARS = 500

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": SEARCH,
        "description": "Search the user's inbox. Returns up to max_results emails (newest first) that "
                       "contain ALL the keywords, as message_id, subject, from, date and a snippet.",
        "parameters": {"type": "object", "properties": {
            "keywords": {"type": "array", "items": {"type": "string"},
                         "description": "Words or phrases that must all appear in the email."},
            "from_addr": {"type": "string", "description": "Only emails sent by this address."},
            "to_addr": {"type": "string", "description": "Only emails sent to this address."},
            "sent_after": {"type": "string", "description": "Only emails sent on or after this date, YYYY-MM-DD."},
            "sent_before": {"type": "string", "description": "Only emails sent before this date, YYYY-MM-DD."},
            "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": MAX_RESULTS,
                            "description": "How many results to return (1 to 10)."},
        }, "required": ["keywords"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": READ,
        "description": "Read one email of the inbox in full (date, subject, sender, recipients, body).",
        "parameters": {"type": "object", "properties": {
            "message_id": {"type": "string", "description": "The message_id of a search result."},
        }, "required": ["message_id"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": ANSWER,
        "description": "Give the final answer and the message_ids of the emails it comes from. "
                       "Answer \"I don't know\" when the inbox does not tell. Ends the task.",
        "parameters": {"type": "object", "properties": {
            "answer": {"type": "string", "description": "The answer to the user's question."},
            "sources": {"type": "array", "items": {"type": "string"},
                        "description": "message_ids of the emails that support the answer."},
        }, "required": ["answer", "sources"], "additionalProperties": False}}},
]


@dataclass(frozen=True)
class ToolError:
    """Why a call cannot run. ``kind``: ``unknown_tool`` or ``bad_arguments``."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class SearchArgs:
    keywords: tuple[str, ...]
    from_addr: str | None = None
    to_addr: str | None = None
    sent_after: str | None = None
    sent_before: str | None = None
    max_results: int = MAX_RESULTS

    def key(self) -> tuple[Any, ...]:
        """Identity of a search for repeat detection (DESIGN.md §6): lower-cased, de-duplicated,
        sorted keywords; from; to; dates. ``max_results`` is left out."""
        return (tuple(sorted({k.lower() for k in self.keywords})),
                (self.from_addr or "").lower(), (self.to_addr or "").lower(),
                self.sent_after, self.sent_before)


@dataclass(frozen=True)
class ReadArgs:
    message_id: str


@dataclass(frozen=True)
class AnswerArgs:
    answer: str
    sources: tuple[str, ...]


ToolArgs = SearchArgs | ReadArgs | AnswerArgs
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _bad(message: str) -> ToolError:
    return ToolError("bad_arguments", message)


def _check_names(tool: str, args: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> ToolError | None:
    if not isinstance(args, dict):
        return _bad(f"{tool} arguments must be a JSON object, got {type(args).__name__}")
    unknown = sorted(str(k) for k in args if k not in allowed)
    if unknown:
        return _bad(f"{tool} got unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    missing = [k for k in required if args.get(k) is None]
    if missing:
        return _bad(f"{tool} is missing required argument(s) {', '.join(missing)}")
    return None


def _text(value: Any, name: str, optional: bool = True) -> str | None | ToolError:
    """A stripped string; null or "" -> None when optional; numbers are not accepted here."""
    if value is None or (optional and isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        return _bad(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        return _bad(f"{name} must not be empty")
    if len(value) > MAX_ARG_CHARS:
        return _bad(f"{name} is longer than {MAX_ARG_CHARS} characters")
    return value.strip()


def _date(value: Any, name: str) -> str | None | ToolError:
    text = _text(value, name)
    if text is None or isinstance(text, ToolError):
        return text
    if not _DATE.fullmatch(text):
        return _bad(f"{name} must be a date written YYYY-MM-DD, got {text!r}")
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return _bad(f"{name} {text!r} is not a real calendar date")
    return text


def _keywords(value: Any) -> tuple[str, ...] | ToolError:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        return _bad(f"keywords must be a list of strings, got {type(value).__name__}")
    out: list[str] = []
    for k in value:
        if isinstance(k, (int, float)) and not isinstance(k, bool):
            k = str(k)
        if not isinstance(k, str):
            return _bad(f"keywords must be strings, got {type(k).__name__}")
        if len(k) > MAX_ARG_CHARS:
            return _bad(f"a keyword is longer than {MAX_ARG_CHARS} characters")
        if k.strip():
            out.append(k.strip())
    if not out:
        return _bad("keywords must contain at least one non-empty keyword")
    if len(out) > MAX_KEYWORDS:
        return _bad(f"at most {MAX_KEYWORDS} keywords, got {len(out)}")
    return tuple(out)


def _max_results(value: Any) -> int | ToolError:
    if value is None:
        return MAX_RESULTS
    n: int | None = None
    if isinstance(value, bool):
        n = None
    elif isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    if n is None:
        return _bad(f"max_results must be an integer from 1 to {MAX_RESULTS}, got {value!r}")
    if not 1 <= n <= MAX_RESULTS:
        return _bad(f"max_results must be from 1 to {MAX_RESULTS}, got {n}")
    return n


def validate_search(args: Any) -> SearchArgs | ToolError:
    """Clean ``search_emails`` arguments, or why they are invalid (see the module docstring)."""
    err = _check_names(SEARCH, args, ("keywords", "from_addr", "to_addr", "sent_after",
                                      "sent_before", "max_results"), ("keywords",))
    if err:
        return err
    fields = {"keywords": _keywords(args["keywords"]),
              "from_addr": _text(args.get("from_addr"), "from_addr"),
              "to_addr": _text(args.get("to_addr"), "to_addr"),
              "sent_after": _date(args.get("sent_after"), "sent_after"),
              "sent_before": _date(args.get("sent_before"), "sent_before"),
              "max_results": _max_results(args.get("max_results"))}
    for v in fields.values():
        if isinstance(v, ToolError):
            return v
    after, before = fields["sent_after"], fields["sent_before"]
    if after and before and after > before:
        return _bad(f"sent_after {after} is later than sent_before {before}")
    return SearchArgs(**fields)  # type: ignore[arg-type]


def validate_read(args: Any) -> ReadArgs | ToolError:
    """Clean ``read_email`` arguments, or why they are invalid."""
    err = _check_names(READ, args, ("message_id",), ("message_id",))
    if err:
        return err
    mid = _text(args["message_id"], "message_id", optional=False)
    return mid if isinstance(mid, ToolError) else ReadArgs(mid)  # type: ignore[arg-type]


def validate_answer(args: Any) -> AnswerArgs | ToolError:
    """Clean ``return_final_answer`` arguments, or why they are invalid."""
    err = _check_names(ANSWER, args, ("answer", "sources"), ("answer", "sources"))
    if err:
        return err
    answer, sources = args["answer"], args["sources"]
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        return _bad("answer must be a non-empty string")
    if isinstance(sources, str):
        sources = [sources] if sources.strip() else []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        return _bad("sources must be a list of message_id strings")
    return AnswerArgs(answer.strip(), tuple(s.strip() for s in sources if s.strip()))


_VALIDATORS = {SEARCH: validate_search, READ: validate_read, ANSWER: validate_answer}


def validate_call(name: Any, arguments: Any) -> ToolArgs | ToolError:
    """Clean arguments for a named tool call; ``unknown_tool`` when the name is not a tool."""
    validator = _VALIDATORS.get(name) if isinstance(name, str) else None
    if validator is None:
        return ToolError("unknown_tool", f"no tool named {str(name)[:80]!r}; the tools are "
                                         f"{', '.join(TOOL_NAMES)}")
    return validator(arguments)


# -- rendering (what the model sees) ------------------------------------------------------
def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def render_search(hits: list[SearchHit]) -> str:
    """``[{"message_id", "subject", "from", "date", "snippet"}, ...]`` as compact JSON."""
    return _dumps([h.to_dict() for h in hits])


def render_email(email: Email) -> str:
    """``{"message_id", "date", "subject", "from", "to", "cc", "bcc", "body"}`` as compact JSON."""
    return _dumps({"message_id": email.message_id, "date": email.date, "subject": email.subject,
                   "from": email.from_address, "to": list(email.to), "cc": list(email.cc),
                   "bcc": list(email.bcc), "body": email.body})


def render_error(message: str) -> str:
    """``{"error": message}`` as compact JSON."""
    return _dumps({"error": message})


def render_status(message: str) -> str:
    """``{"status": message}`` as compact JSON (the reply to a final answer)."""
    return _dumps({"status": message})
