"""What a store build and the mail readers report, and the options of a build.

``BuildOptions`` / ``BuildReport`` serve :func:`inboxrl.email.store_build.build_store`;
``IngestReport`` serves the readers of :mod:`inboxrl.email.ingest`. Every problem met on the way
(a skipped mass mail, a broken file, a date that had to be defaulted, an id two messages share)
is counted, never silently lost, and the two reports count the same things the same way: a
reader's missing ids and bad dates are the builder's generated ids and defaulted dates.

The schema lives in :mod:`inboxrl.email.store_schema`, the text helpers in
:mod:`inboxrl.email.mail_text`; both are re-exported here for older imports.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from inboxrl.email.mail_text import (DEFAULT_DATE, clean_address, clean_text, decode_bytes,  # noqa: F401
                                     format_utc, html_to_text, normalize_date, parse_addresses)
from inboxrl.email.store_schema import FORMAT, SCHEMA_VERSION  # noqa: F401

MAX_ERROR_SAMPLES = 20
MAX_SHARED_ID_SAMPLES = 10


@dataclass(frozen=True)
class BuildOptions:
    """Filters applied while building a store.

    ``max_body_chars``: longer bodies are cut to this many characters (counted as truncated,
    and marked as truncated in what the model reads).
    ``max_recipients``: a message with more to+cc+bcc addresses is a mass mail and is skipped
    (counted; about 1% of a real Enron mailbox). 30 is ART-E's filter; raise it to keep them.
    ``min_body_chars``: a message whose stripped body is shorter is skipped (0 keeps all).
    ``batch_size``: rows per ``executemany`` batch.
    ``order_by_date``: number the rows by date (staged, then copied in date order): searches of
    frequent words and names stop after the newest matches instead of ranking them all (p99 of
    a bare first name 148 -> 13 ms at 500k emails), for a slower build (docs/results.md).
    """

    max_body_chars: int = 20000
    max_recipients: int = 30
    min_body_chars: int = 0
    batch_size: int = 5000
    order_by_date: bool = False

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
    """Counts of one store build.

    ``read = stored + same_message + duplicate_content + mass_mail_skipped + too_short_skipped``.
    ``same_message``: the same message (same id and content) met again, e.g. delivered to a
    second inbox: one row, the new owners added. ``duplicate_content``: the same content under
    another id (resolved as an alias). ``id_reused``: messages stored under an id another,
    different message already has (kept apart: each stays in its own inboxes).
    ``ids_shared_in_inbox``: (inbox, id) pairs that more than one message answers to; ``read``
    resolves them deterministically (see :meth:`inboxrl.email.store.EmailStore.read`).
    ``source_skipped``: what the reader skipped before the build, by reason."""

    db_path: str = ""
    read: int = 0
    stored: int = 0
    same_message: int = 0
    duplicate_content: int = 0
    id_reused: int = 0
    ids_shared_in_inbox: int = 0
    shared_id_examples: list[str] = field(default_factory=list)
    truncated: int = 0
    mass_mail_skipped: int = 0
    too_short_skipped: int = 0
    source_skipped: dict[str, int] = field(default_factory=dict)
    missing_date_defaulted: int = 0
    missing_id_generated: int = 0
    names: int = 0
    recipients: int = 0
    memberships: int = 0
    inboxes: int = 0
    max_recipients: int = BuildOptions.max_recipients
    max_body_chars: int = BuildOptions.max_body_chars
    seconds: float = 0.0

    @property
    def emails_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["emails_per_second"] = round(self.emails_per_second, 1)
        return d

    def skip_reasons(self) -> dict[str, int]:
        """Every reason a message of the source is not in the store, with its count."""
        reasons = {f"mass mails (more than {self.max_recipients} recipients; raise --max-recipients "
                   "to keep them)": self.mass_mail_skipped,
                   "body shorter than min_body_chars": self.too_short_skipped}
        reasons.update({f"unreadable in the source: {k}": v for k, v in sorted(self.source_skipped.items())})
        return reasons

    def summary(self) -> str:
        """A readable paragraph: what was stored, merged, skipped (each reason) and repaired."""
        skipped = ", ".join(f"{n:,} {why}" for why, n in self.skip_reasons().items())
        lines = [
            f"built {self.db_path}: {self.stored:,} of {self.read:,} emails stored in "
            f"{self.seconds:.1f}s ({self.emails_per_second:,.0f} emails/s), "
            f"{self.inboxes:,} inboxes, {self.memberships:,} inbox memberships, "
            f"{self.recipients:,} recipient rows, {self.names:,} display names",
            f"merged: {self.same_message:,} same message met again (same id and content), "
            f"{self.duplicate_content:,} same content under another id (kept as an alias)",
            f"skipped: {skipped}",
            f"ids: {self.id_reused:,} messages share an id with a different message (kept apart, each "
            f"in its own inboxes); {self.ids_shared_in_inbox:,} ids answer for more than one message "
            f"of one inbox (read picks one deterministically)"
            + (f", e.g. {'; '.join(self.shared_id_examples[:3])}" if self.shared_id_examples else ""),
            f"repaired: {self.truncated:,} bodies truncated at {self.max_body_chars:,} characters "
            f"(marked as truncated), {self.missing_date_defaulted:,} missing or unparseable dates "
            f"set to {DEFAULT_DATE}, {self.missing_id_generated:,} missing message ids generated",
        ]
        return "\n".join(lines)


@dataclass
class IngestReport:
    """Counts of one reader run (parquet rows, maildir files or mbox messages).

    ``seen = yielded + broken_skipped``; ``skipped`` holds the reasons of ``broken_skipped``."""

    source: str = ""
    kind: str = ""
    seen: int = 0
    yielded: int = 0
    broken_skipped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
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

    def error(self, where: str, problem: str, reason: str | None = None) -> None:
        """Count a broken item as skipped under ``reason`` (default: the problem's text before
        any ``:``) and keep the first few problems for the summary."""
        self.broken_skipped += 1
        key = reason or problem.split(":")[0]
        self.skipped = dict(Counter(self.skipped) + Counter({key: 1}))
        if len(self.errors) < MAX_ERROR_SAMPLES:
            self.errors.append(f"{where}: {problem}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        reasons = ", ".join(f"{n:,} {why}" for why, n in sorted(self.skipped.items()))
        lines = [
            f"read {self.kind} {self.source}: {self.yielded:,} of {self.seen:,} messages usable, "
            f"{self.broken_skipped:,} broken and skipped" + (f" ({reasons})" if reasons else ""),
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
