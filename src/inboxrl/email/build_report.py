"""How an email store is built, and what the build and the mail readers report.

``BuildOptions`` / ``BuildReport`` / ``StoreBuilder`` and the schema SQL serve
:func:`inboxrl.email.store.build_store` (whose module docstring describes the schema);
``IngestReport`` and the text helpers (dates, addresses, charsets, HTML) serve the readers of
:mod:`inboxrl.email.ingest`. Every problem met on the way (a duplicate, a broken file, a date
that had to be defaulted) is counted, never silently lost.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

FORMAT = "inboxrl-email-store"
SCHEMA_VERSION = "2"
_BLOCK_TAGS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"}

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


# ---------------------------------------------------------------- store schema and builder

SCHEMA_TABLES = """
CREATE TABLE store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE emails(
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    date TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_address TEXT NOT NULL COLLATE NOCASE,
    body TEXT NOT NULL,
    file_name TEXT,
    inboxes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE recipients(
    email_id INTEGER NOT NULL REFERENCES emails(id),
    address TEXT NOT NULL COLLATE NOCASE,
    kind TEXT NOT NULL CHECK (kind IN ('to', 'cc', 'bcc'))
);
CREATE TABLE inbox_members(
    inbox TEXT NOT NULL COLLATE NOCASE,
    email_id INTEGER NOT NULL REFERENCES emails(id)
);
CREATE TABLE message_aliases(
    message_id TEXT PRIMARY KEY,
    email_id INTEGER NOT NULL REFERENCES emails(id)
) WITHOUT ROWID;
CREATE TABLE inbox_keys(
    key INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE VIRTUAL TABLE emails_fts USING fts5(
    subject, body, inboxes, content='emails', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2', columnsize=0
);
"""

# Created after the bulk load: building an index once is much faster than keeping it up to date.
SCHEMA_INDEXES = """
CREATE UNIQUE INDEX idx_emails_message_id ON emails(message_id);
CREATE INDEX idx_emails_from ON emails(from_address);
CREATE INDEX idx_emails_date ON emails(date);
CREATE INDEX idx_recipients_address ON recipients(address, email_id);
CREATE INDEX idx_recipients_email ON recipients(email_id);
CREATE UNIQUE INDEX idx_inbox_members ON inbox_members(inbox, email_id);
CREATE INDEX idx_inbox_members_email ON inbox_members(email_id, inbox);
"""

SCHEMA_TRIGGERS = """
CREATE TRIGGER emails_fts_ai AFTER INSERT ON emails BEGIN
    INSERT INTO emails_fts(rowid, subject, body, inboxes)
        VALUES (new.id, new.subject, new.body, new.inboxes);
END;
CREATE TRIGGER emails_fts_ad AFTER DELETE ON emails BEGIN
    INSERT INTO emails_fts(emails_fts, rowid, subject, body, inboxes)
        VALUES ('delete', old.id, old.subject, old.body, old.inboxes);
    DELETE FROM recipients WHERE email_id = old.id;
    DELETE FROM inbox_members WHERE email_id = old.id;
END;
CREATE TRIGGER emails_fts_au AFTER UPDATE ON emails BEGIN
    INSERT INTO emails_fts(emails_fts, rowid, subject, body, inboxes)
        VALUES ('delete', old.id, old.subject, old.body, old.inboxes);
    INSERT INTO emails_fts(rowid, subject, body, inboxes)
        VALUES (new.id, new.subject, new.body, new.inboxes);
END;
CREATE TRIGGER inbox_members_ai AFTER INSERT ON inbox_members BEGIN
    INSERT OR IGNORE INTO inbox_keys(address) VALUES (new.inbox);
    UPDATE emails SET inboxes = ltrim(inboxes || ' m' ||
        (SELECT key FROM inbox_keys WHERE address = new.inbox)) WHERE id = new.email_id;
END;
CREATE TRIGGER inbox_members_ad AFTER DELETE ON inbox_members BEGIN
    UPDATE emails SET inboxes = trim(replace(' ' || inboxes || ' ', ' m' ||
        (SELECT key FROM inbox_keys WHERE address = old.inbox) || ' ', ' ')) WHERE id = old.email_id;
END;
"""


def clean_text(text: Any) -> str:
    """``text`` as a string SQLite accepts: lone surrogates replaced, NUL turned into a space."""
    s = text if isinstance(text, str) else str(text)
    if not s.isascii():
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s.replace("\x00", " ") if "\x00" in s else s


def clean_address(text: Any) -> str:
    """An address as stored and compared: cleaned, stripped, lower-cased."""
    return clean_text(text).strip().lower()


# ---------------------------------------------------------------- mail text


def parse_addresses(value: Any) -> list[str]:
    """Lower-cased addresses from a list, an array, or a comma-separated header string."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if item is None:
            continue
        text = str(item)
        found = [a for _, a in getaddresses([text]) if a and "@" in a]
        if not found:
            found = [t for t in (p.strip() for p in text.replace(";", ",").split(",")) if t]
        out.extend(a.strip().strip("<>").lower() for a in found)
    return [a for a in out if a]


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document: scripts and styles dropped, block tags as newlines."""
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; keep whatever was collected
        pass
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text, blank = [], False
    for line in lines:
        if line or not blank:
            text.append(line)
        blank = not line
    return "\n".join(text).strip()


def decode_bytes(payload: bytes, charset: str | None) -> tuple[str, bool]:
    """``payload`` as text and whether a fallback was needed (declared charset, UTF-8, Latin-1)."""
    for i, cs in enumerate([c for c in (charset, "utf-8") if c]):
        try:
            return payload.decode(cs), i > 0 and charset is not None
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("latin-1"), True
