"""Text helpers shared by the mail readers and the store builder: dates, addresses and display
names, Message-IDs, charsets, HTML.

Every function takes messy real-world input and returns a usable value or None; none raises
on bad mail.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_tz
from html.parser import HTMLParser
from typing import Any

DEFAULT_DATE = "1970-01-01 00:00:00"
"""Date given to a message whose date is missing or unparseable (counted in the reports)."""

_BLOCK_TAGS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"}
_ISO_SECONDS = re.compile(r"(\d{4})-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_C1 = re.compile("[\x80-\x9f]")
_LATIN1_NAMES = {"latin-1", "latin1", "iso-8859-1", "iso8859-1", "iso_8859-1", "l1", "us-ascii", "ascii"}
_ANGLE_ID = re.compile(r"<[^<>]*>")
_COMMENT = re.compile(r"\([^()]*\)")


def clean_text(text: Any) -> str:
    """``text`` as a string SQLite accepts: lone surrogates replaced, NUL turned into a space."""
    s = text if isinstance(text, str) else str(text)
    if not s.isascii():
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s.replace("\x00", " ") if "\x00" in s else s


def clean_address(text: Any) -> str:
    """An address as stored and compared: cleaned, stripped, lower-cased."""
    return clean_text(text).strip().lower()


# ---------------------------------------------------------------- dates


def format_utc(dt: datetime) -> str:
    """``dt`` as UTC ``YYYY-MM-DD HH:MM:SS`` (four-digit year); a naive datetime is taken to be
    UTC already."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"


def _fix_year(year: int) -> int | None:
    """RFC 5322 §4.3 obsolete years: three digits (``102``, also written ``0102``) add 1900;
    years before 100 that reach here are not understood."""
    if 100 <= year < 1000:
        return year + 1900
    return year if year >= 1000 else None


def _rfc2822(text: str) -> str | None:
    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    year = _fix_year(parsed[0])
    if year is None:
        return None
    offset = parsed[9] or 0
    try:
        dt = datetime(year, *parsed[1:6], tzinfo=timezone(timedelta(seconds=offset)))
    except (ValueError, OverflowError, TypeError):
        return None
    return format_utc(dt)


def _iso(text: str) -> str | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    year = _fix_year(dt.year)
    if year is None:
        return None
    try:
        return format_utc(dt.replace(year=year))
    except ValueError:  # 29 February of a year that is not a leap year once 1900 is added
        return None


def normalize_date(value: Any) -> str | None:
    """A date as UTC ``YYYY-MM-DD HH:MM:SS``, or None when it cannot be understood.

    Accepts datetimes, dates, the canonical string, ISO 8601 strings (``T`` separator, offsets,
    date only) and RFC 2822 strings (``Mon, 14 May 2001 16:39:00 -0700``). A three-digit year
    (``102``, or ``0102`` as some mailers write it) is the obsolete RFC 5322 form of 2002,
    whichever way the date is written; earlier years are not understood. The result always
    parses back to itself, so a reader and the store builder count the same bad dates."""
    if value is None:
        return None
    if isinstance(value, datetime):
        year = _fix_year(value.year)
        if year is None:
            return None
        try:
            return format_utc(value.replace(year=year))
        except ValueError:
            return None
    if isinstance(value, date):
        return normalize_date(datetime(value.year, value.month, value.day))
    text = str(value).strip()
    if not text:
        return None
    m = _ISO_SECONDS.fullmatch(text)
    if m and int(m.group(1)) >= 1000:
        return text
    return _iso(text) or _rfc2822(text)


# ---------------------------------------------------------------- headers


def decode_words(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded and whitespace folded to one line."""
    text = "" if value is None else str(value)
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except Exception:  # malformed encoded words: keep the raw text
            pass
    return " ".join(text.split())


def normalize_message_id(value: Any) -> str:
    """A Message-ID as written in the raw header: unfolded, whitespace collapsed, the first
    ``<...>`` part when there is one (comments around it dropped), else the text without
    ``(comments)``. Never the email package's parse, which cuts ids at ``:`` or ``,``."""
    text = " ".join(clean_text("" if value is None else value).split())
    m = _ANGLE_ID.search(text)
    if m:
        inner = " ".join(m.group(0)[1:-1].split())
        return f"<{inner}>" if inner else ""
    return " ".join(_COMMENT.sub(" ", text).split())


def parse_named_addresses(value: Any) -> list[tuple[str, str]]:
    """``(display name, address)`` pairs from a list, an array or a header string; addresses
    lower-cased, names with RFC 2047 words decoded ("" when the header gives none)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[tuple[str, str]] = []
    for item in items:
        if item is None:
            continue
        text = " ".join(str(item).split())
        found = [(n, a) for n, a in getaddresses([text]) if a and "@" in a]
        if not found:
            found = [("", t) for t in (p.strip() for p in text.replace(";", ",").split(","))
                     if t and not t.endswith(":")]  # "undisclosed-recipients:;" is an empty group
        for name, addr in found:
            addr = addr.strip().strip("<>").lower()
            name = decode_words(name).strip().strip("'\"").strip()
            if addr:
                out.append(("" if name.lower() == addr else name, addr))
    return out


def parse_addresses(value: Any) -> list[str]:
    """Lower-cased addresses from a list, an array, or a comma-separated header string."""
    return [a for _, a in parse_named_addresses(value)]


# ---------------------------------------------------------------- bodies


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


def _single_byte(payload: bytes) -> str:
    """Latin-1, or Windows-1252 when Latin-1 would give C1 control characters (the bytes
    0x80-0x9f are cp1252's quotes, dashes and euro sign in real mail, never controls)."""
    text = payload.decode("latin-1")
    if _C1.search(text):
        return payload.decode("cp1252", errors="replace")
    return text


def decode_bytes(payload: bytes, charset: str | None) -> tuple[str, bool]:
    """``payload`` as text and whether a fallback was needed: the declared charset, then UTF-8,
    then Latin-1 / cp1252 (see :func:`_single_byte`). A declared Latin-1 or ASCII charset whose
    text holds C1 controls is read as cp1252 too (as browsers do)."""
    declared = (charset or "").strip().lower() or None
    for i, cs in enumerate([c for c in (declared, "utf-8") if c]):
        try:
            text = payload.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
        if cs in _LATIN1_NAMES and _C1.search(text):
            return _single_byte(payload), False
        return text, i > 0 and declared is not None
    return _single_byte(payload), True
