"""Options and count reports of the email-store build and of the mail readers.

``BuildOptions`` / ``BuildReport`` belong to :func:`inboxrl.email.store.build_store`;
``IngestReport`` to the readers of :mod:`inboxrl.email.ingest`. Every problem met on the way
(a duplicate, a broken file, a date that had to be defaulted) is counted, never silently lost.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

DEFAULT_DATE = "1970-01-01 00:00:00"
"""Date given to a message whose date is missing or unparseable (counted in the reports)."""

MAX_ERROR_SAMPLES = 20


@dataclass(frozen=True)
class BuildOptions:
    """Filters applied while building a store.

    ``max_body_chars``: longer bodies are cut to this many characters (counted as truncated).
    ``max_recipients``: a message with more to+cc+bcc addresses is a mass mail and is skipped.
    ``min_body_chars``: a message whose stripped body is shorter is skipped (0 keeps all).
    ``batch_size``: rows per ``executemany`` batch.
    """

    max_body_chars: int = 20000
    max_recipients: int = 30
    min_body_chars: int = 0
    batch_size: int = 5000

    def __post_init__(self) -> None:
        if self.max_body_chars < 1:
            raise ValueError(f"max_body_chars must be >= 1, got {self.max_body_chars}")
        if self.max_recipients < 0:
            raise ValueError(f"max_recipients must be >= 0, got {self.max_recipients}")
        if self.min_body_chars < 0:
            raise ValueError(f"min_body_chars must be >= 0, got {self.min_body_chars}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class BuildReport:
    """Counts of one store build. ``read`` = stored + every skipped kind."""

    db_path: str = ""
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    duplicate_ids: int = 0
    duplicate_content: int = 0
    truncated: int = 0
    mass_mail_skipped: int = 0
    too_short_skipped: int = 0
    missing_date_defaulted: int = 0
    missing_id_generated: int = 0
    recipients: int = 0
    memberships: int = 0
    inboxes: int = 0
    seconds: float = 0.0

    @property
    def emails_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["emails_per_second"] = round(self.emails_per_second, 1)
        return d

    def summary(self) -> str:
        """One readable paragraph: what was stored and what was skipped or repaired, and why."""
        lines = [
            f"built {self.db_path}: {self.stored:,} of {self.read:,} emails stored in "
            f"{self.seconds:.1f}s ({self.emails_per_second:,.0f} emails/s), "
            f"{self.inboxes:,} inboxes, {self.memberships:,} inbox memberships, "
            f"{self.recipients:,} recipient rows",
            f"skipped: {self.duplicates:,} duplicates ({self.duplicate_ids:,} same message_id, "
            f"{self.duplicate_content:,} same sender+date+subject+body), "
            f"{self.mass_mail_skipped:,} mass mails, {self.too_short_skipped:,} too short",
            f"repaired: {self.truncated:,} bodies truncated, {self.missing_date_defaulted:,} dates "
            f"defaulted to {DEFAULT_DATE}, {self.missing_id_generated:,} message ids generated",
        ]
        return "\n".join(lines)


@dataclass
class IngestReport:
    """Counts of one reader run (parquet rows, maildir files or mbox messages)."""

    source: str = ""
    kind: str = ""
    seen: int = 0
    yielded: int = 0
    broken_skipped: int = 0
    missing_message_id: int = 0
    missing_from: int = 0
    missing_subject: int = 0
    missing_date: int = 0
    bad_date: int = 0
    charset_fallback: int = 0
    html_converted: int = 0
    empty_body: int = 0
    owners: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def error(self, where: str, problem: str) -> None:
        """Count a broken item as skipped and keep the first few reasons for the summary."""
        self.broken_skipped += 1
        if len(self.errors) < MAX_ERROR_SAMPLES:
            self.errors.append(f"{where}: {problem}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"read {self.kind} {self.source}: {self.yielded:,} of {self.seen:,} messages usable, "
            f"{self.broken_skipped:,} broken and skipped",
            f"defaults: {self.missing_message_id:,} missing message ids, {self.missing_from:,} missing "
            f"senders, {self.missing_subject:,} missing subjects, {self.missing_date:,} missing and "
            f"{self.bad_date:,} unparseable dates (set to {DEFAULT_DATE})",
            f"bodies: {self.charset_fallback:,} decoded with a fallback charset, "
            f"{self.html_converted:,} converted from HTML, {self.empty_body:,} empty",
        ]
        if self.owners:
            shown = ", ".join(f"{k} -> {v}" for k, v in list(self.owners.items())[:5])
            more = f" (+{len(self.owners) - 5} more)" if len(self.owners) > 5 else ""
            lines.append(f"mailbox owners: {shown}{more}")
        lines += [f"  {e}" for e in self.errors[:5]]
        return "\n".join(lines)


_ISO_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def format_utc(dt: datetime) -> str:
    """``dt`` as UTC ``YYYY-MM-DD HH:MM:SS``; a naive datetime is taken to be UTC already."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def normalize_date(value: Any) -> str | None:
    """A date as UTC ``YYYY-MM-DD HH:MM:SS``, or None when it cannot be understood.

    Accepts datetimes, dates, the canonical string, ISO 8601 strings (``T`` separator, offsets,
    date only) and RFC 2822 strings (``Mon, 14 May 2001 16:39:00 -0700``)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return f"{value.isoformat()} 00:00:00"
    text = str(value).strip()
    if not text:
        return None
    if _ISO_SECONDS.fullmatch(text):
        return text
    try:
        return format_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        pass
    try:
        return format_utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
