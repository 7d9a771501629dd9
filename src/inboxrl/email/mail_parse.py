"""One RFC 822 message (bytes) as an :class:`~inboxrl.email.types.Email`, for the maildir and
mbox readers of :mod:`inboxrl.email.ingest`.

Headers are read from the raw header lines: the Message-ID as written (whitespace folded; the
email package's own parse cuts ids such as ``<Mail2L:1:x@y>`` at the ``:``), display names with
RFC 2047 words decoded, undeclared 8-bit bytes decoded like the body. Bodies: the text/plain
part (else the HTML part as text), decoded with the declared charset, then UTF-8, then
Latin-1 / cp1252. Nothing here raises on messy mail; every default is counted in the report.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser

from inboxrl.email.build_report import IngestReport
from inboxrl.email.mail_text import (DEFAULT_DATE, decode_bytes, decode_words, html_to_text, normalize_date,
                                     normalize_message_id, parse_named_addresses)
from inboxrl.email.types import Email

ADDRESS_HEADERS = ("from", "to", "cc", "bcc")


def _has_raw_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def raw_header(msg: EmailMessage, name: str) -> str | None:
    """The first ``name`` header as written (folding removed), undeclared 8-bit bytes decoded
    like the body (charset, UTF-8, Latin-1 / cp1252); None when absent."""
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == name), None)
    if raw is None:
        return None
    if _has_raw_bytes(raw):
        try:
            charset = msg.get_content_charset()
        except Exception:
            charset = None
        raw, _ = decode_bytes(raw.encode("utf-8", "surrogateescape"), charset)
    return " ".join(raw.replace("\r", " ").replace("\n", " ").split())


def header_text(msg: EmailMessage, name: str) -> str:
    """A header as one line of text, RFC 2047 words decoded."""
    return decode_words(raw_header(msg, name) or "")


def named_addresses(msg: EmailMessage, name: str) -> list[tuple[str, str]]:
    """``(display name, address)`` pairs of an address header (names decoded)."""
    raw = raw_header(msg, name)
    return [(n, a) for n, a in parse_named_addresses(raw) if a != "<>"] if raw else []


def _text_part(msg: EmailMessage) -> EmailMessage | None:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None and not msg.is_multipart() and msg.get_content_maintype() == "text":
        part = msg
    return part


def _body(msg: EmailMessage, report: IngestReport) -> str:
    part = _text_part(msg)
    if part is None:
        report.empty_body += 1
        return ""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        payload = raw.encode("utf-8", "replace") if isinstance(raw, str) else b""
    text, fallback = decode_bytes(payload, part.get_content_charset())
    report.charset_fallback += fallback
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
        report.html_converted += 1
    if not text.strip():
        report.empty_body += 1
    return text


def message_date(value: object, report: IngestReport) -> str:
    """A date as the store keeps it; missing and unparseable dates counted and defaulted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        report.missing_date += 1
        return DEFAULT_DATE
    date = normalize_date(value)
    if date is None:
        report.bad_date += 1
        return DEFAULT_DATE
    return date


def parse_message(raw: bytes, where: str, report: IngestReport) -> Email | None:
    """One RFC 822 message as an Email, or None (counted as broken) when it has no mail headers.

    A message without a Message-ID gets ``""`` (counted); the store builder generates one."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    fields = {h: raw_header(msg, h) for h in ("message-id", "from", "subject", "date", "to")}
    if not any(fields.values()):
        report.error(where, "no mail headers")
        return None
    mid = normalize_message_id(fields["message-id"] or "")
    report.missing_message_id += not mid
    people = {h: named_addresses(msg, h) for h in ADDRESS_HEADERS}
    report.missing_from += not people["from"]
    subject = header_text(msg, "subject")
    report.missing_subject += not subject
    names: dict[str, str] = {}
    for pairs in people.values():
        for name, addr in pairs:
            if name:
                names.setdefault(addr, name)
    senders = [a for _, a in people["from"]]
    return Email(message_id=mid, date=message_date(fields["date"], report), subject=subject,
                 from_address=senders[0] if senders else "",
                 to=[a for _, a in people["to"]], cc=[a for _, a in people["cc"]],
                 bcc=[a for _, a in people["bcc"]], body=_body(msg, report), file_name=where, names=names)


def common_to(raws: Iterator[bytes]) -> str | None:
    """The most frequent To address over some messages' headers (ties: alphabetical)."""
    counts: Counter[str] = Counter()
    for raw in raws:
        try:
            msg = BytesHeaderParser(policy=policy.default).parsebytes(raw)
            counts.update({a for _, a in named_addresses(msg, "to")})
        except Exception:
            continue
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
