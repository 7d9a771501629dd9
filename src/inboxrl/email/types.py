"""Data contracts of the email environment (docs/architecture.md)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Email:
    """One message. ``date`` is ISO 8601 (``YYYY-MM-DD HH:MM:SS``, UTC). ``names`` maps an
    address of the sender or a recipient to its display name (``"Jon Smith"``), where the mail
    gave one; ``body_truncated`` is true when the store cut the body (``max_body_chars``)."""

    message_id: str
    date: str
    subject: str
    from_address: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    body: str = ""
    file_name: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    body_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchHit:
    """One ``search_emails`` result as the model sees it (``from``: ``Name <address>`` when the
    sender's display name is known)."""

    message_id: str
    subject: str
    from_address: str
    date: str
    snippet: str
    from_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "subject": self.subject,
                "from": named(self.from_name, self.from_address), "date": self.date,
                "snippet": self.snippet}


def named(name: str, address: str) -> str:
    """``Name <address>``, or the bare address when there is no display name."""
    return f"{name} <{address}>" if name and address else (address or name)


@dataclass
class Scenario:
    """A question about one inbox, with its reference answer and source message ids."""

    id: str
    question: str
    answer: str
    message_ids: list[str]
    inbox_address: str
    query_date: str
    how_realistic: float | None = None
    split: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scenario":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class ToolCall:
    """A parsed tool call: the tool's name and its JSON arguments."""

    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}
