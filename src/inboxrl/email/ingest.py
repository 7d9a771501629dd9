"""Readers of real mail into ``(Email, owners)`` records for :func:`inboxrl.email.store.build_store`.

* ``read_parquet``: the public Enron parquet layout (columns ``message_id, subject, from, to, cc,
  bcc, date, body, file_name``; to / cc / bcc as arrays or comma-separated strings), one file or
  a directory of them, read in row batches. The mailbox owner of a row (``allen-p/inbox/1.``)
  is a folder name, not an address, so a row has no owner unless the caller passes ``owner``:
  inbox membership comes from its from / to / cc / bcc addresses.
* ``read_maildir``: CMU Enron trees (``maildir/<user>/<folder>/<n>.``, one RFC 822 message per
  file) or any folder tree of message files (a real Maildir's cur/new included). Owner: the
  ``owner`` argument for the whole tree; otherwise, per user folder, the most frequent To address
  of its ``inbox`` folder, falling back to ``<user>@enron.com``. A root that itself holds an
  ``inbox`` folder is one user's mailbox.
* ``read_mbox``: one mbox file; owner the argument, else the most frequent To address in it.

Messy mail never stops a run: missing headers get defaults, unparseable dates become
``DEFAULT_DATE``, bodies are decoded with the declared charset then UTF-8 then Latin-1,
multipart mail gives its text/plain part (else its HTML part as text), and unreadable or
header-less files are skipped. Everything is counted in the stream's ``IngestReport``.
"""
from __future__ import annotations

import hashlib
import mailbox
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from typing import Any

from inboxrl.email.build_report import (DEFAULT_DATE, BuildOptions, BuildReport, IngestReport,
                                        decode_bytes, html_to_text, normalize_date, parse_addresses)
from inboxrl.email.types import Email

PARQUET_COLUMNS = ("message_id", "subject", "from", "to", "cc", "bcc", "date", "body", "file_name")
OWNER_SAMPLE_FILES = 2000


class IngestError(Exception):
    """The source cannot be read at all (missing, or not of the kind asked for)."""


@dataclass
class RecordStream:
    """An iterable of ``(Email, owners)``, counting into ``report`` as it goes (single use)."""

    report: IngestReport
    records: Iterator[tuple[Email, list[str]]] = field(repr=False)

    def __iter__(self) -> Iterator[tuple[Email, list[str]]]:
        return self.records


# ---------------------------------------------------------------- RFC 822 messages


def _raw_header(msg: EmailMessage, name: str) -> str:
    for key, value in msg.raw_items():
        if key.lower() == name:
            try:
                return str(make_header(decode_header(value))).strip()
            except Exception:
                return str(value).strip()
    return ""


def _has_raw_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _header(msg: EmailMessage, name: str) -> str:
    """A header as one line of text; undeclared 8-bit bytes decoded like the body (charset,
    UTF-8, Latin-1) rather than turned into replacement characters."""
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == name), None)
    if raw is not None and _has_raw_bytes(raw):
        try:
            charset = msg.get_content_charset()
        except Exception:
            charset = None
        text, _ = decode_bytes(raw.encode("utf-8", "surrogateescape"), charset)
        return " ".join(text.split())
    try:
        value = msg.get(name)
        return "" if value is None else " ".join(str(value).split())
    except Exception:  # policy.default raises on some malformed headers
        return " ".join(_raw_header(msg, name).split())


def _header_addresses(msg: EmailMessage, name: str) -> list[str]:
    try:
        value = msg.get(name)
        if value is None:
            return []
        found = [a.addr_spec for a in value.addresses if a.addr_spec and a.addr_spec != "<>"]
        return parse_addresses(found) if found else parse_addresses(str(value))
    except Exception:
        return parse_addresses(_raw_header(msg, name))


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


def parse_message(raw: bytes, where: str, report: IngestReport) -> Email | None:
    """One RFC 822 message as an Email, or None (counted as broken) when it has no mail headers."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    fields = {h: _header(msg, h) for h in ("message-id", "from", "subject", "date", "to")}
    if not any(fields.values()):
        report.error(where, "no mail headers")
        return None
    mid = fields["message-id"]
    if not mid:
        report.missing_message_id += 1
        mid = f"<{hashlib.sha1(where.encode() + raw).hexdigest()[:24]}@inboxrl.ingest>"
    senders = _header_addresses(msg, "from")
    report.missing_from += not senders
    report.missing_subject += not fields["subject"]
    return Email(message_id=mid, date=_date(fields["date"], report), subject=fields["subject"],
                 from_address=senders[0] if senders else "", to=_header_addresses(msg, "to"),
                 cc=_header_addresses(msg, "cc"), bcc=_header_addresses(msg, "bcc"),
                 body=_body(msg, report), file_name=where)


def _date(value: Any, report: IngestReport) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        report.missing_date += 1
        return DEFAULT_DATE
    date = normalize_date(value)
    if date is None:
        report.bad_date += 1
        return DEFAULT_DATE
    return date


def _parse_file(path: Path, where: str, report: IngestReport) -> Email | None:
    report.seen += 1
    try:
        return parse_message(path.read_bytes(), where, report)
    except Exception as e:  # unreadable file or a parser bug on odd input: skip, count, go on
        report.error(where, f"{type(e).__name__}: {e}")
        return None


def _common_to(raws: Iterator[bytes]) -> str | None:
    """The most frequent To address over some messages' headers (ties: alphabetical)."""
    counts: Counter[str] = Counter()
    for raw in raws:
        try:
            counts.update(set(_header_addresses(BytesHeaderParser(policy=policy.default).parsebytes(raw), "to")))
        except Exception:
            continue
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


# ---------------------------------------------------------------- maildir


def _message_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _inbox_folder(mailbox_dir: Path) -> Path | None:
    for child in sorted(mailbox_dir.iterdir()):
        if child.is_dir() and child.name.lower() == "inbox":
            return child
    return None


def derive_maildir_owner(mailbox_dir: str | Path) -> str:
    """The owner address of one user's folder: most frequent To address of ``inbox/``
    (over its first ``OWNER_SAMPLE_FILES`` files), else ``<folder name>@enron.com``."""
    mailbox_dir = Path(mailbox_dir)
    inbox = _inbox_folder(mailbox_dir)
    if inbox is not None:
        files = (p for i, p in enumerate(_message_files(inbox)) if i < OWNER_SAMPLE_FILES)
        owner = _common_to(p.read_bytes()[:65536] for p in files)
        if owner:
            return owner
    return f"{mailbox_dir.name.lower()}@enron.com"


def _maildir_records(root: Path, owner: str | None, report: IngestReport) -> Iterator[tuple[Email, list[str]]]:
    if owner or _inbox_folder(root) is not None:
        boxes = [(root, owner or derive_maildir_owner(root))]
    else:
        boxes = [(d, derive_maildir_owner(d)) for d in sorted(root.iterdir())
                 if d.is_dir() and not d.name.startswith(".")] or [(root, None)]
    for box, box_owner in boxes:
        if box_owner:
            report.owners[box.name] = box_owner
        for path in _message_files(box):
            email = _parse_file(path, path.relative_to(root).as_posix(), report)
            if email is not None:
                report.yielded += 1
                yield email, [box_owner] if box_owner else []


def read_maildir(root: str | Path, owner: str | None = None,
                 report: IngestReport | None = None) -> RecordStream:
    """Records of every message file under ``root`` (see the module docstring for owners)."""
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"maildir {root} is not a directory")
    report = report or IngestReport(source=str(root), kind="maildir")
    return RecordStream(report, _maildir_records(root, owner, report))


# ---------------------------------------------------------------- mbox


def _mbox_records(box: mailbox.mbox, name: str, owner: str | None,
                  report: IngestReport) -> Iterator[tuple[Email, list[str]]]:
    for i, key in enumerate(box.iterkeys()):
        report.seen += 1
        where = f"{name}#{i}"
        try:
            email = parse_message(box.get_bytes(key), where, report)
        except Exception as e:
            report.error(where, f"{type(e).__name__}: {e}")
            continue
        if email is not None:
            report.yielded += 1
            yield email, [owner] if owner else []
    box.close()


def read_mbox(path: str | Path, owner: str | None = None,
              report: IngestReport | None = None) -> RecordStream:
    """Records of every message of an mbox file, owned by ``owner`` (derived when None)."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"mbox {path} is not a file")
    report = report or IngestReport(source=str(path), kind="mbox")
    box = mailbox.mbox(path, create=False)
    if not owner:
        owner = _common_to(box.get_bytes(k) for k in box.iterkeys())
    if owner:
        report.owners[path.name] = owner.lower()
    return RecordStream(report, _mbox_records(box, path.name, owner and owner.lower(), report))


# ---------------------------------------------------------------- parquet


def _parquet_files(path: Path) -> list[Path]:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise IngestError(f"no .parquet files under {path}")
    return files


def _row_email(row: dict[str, Any], where: str, report: IngestReport) -> Email:
    mid = str(row.get("message_id") or "").strip()
    if not mid:
        report.missing_message_id += 1
        mid = f"<{hashlib.sha1(where.encode()).hexdigest()[:24]}@inboxrl.ingest>"
    senders = parse_addresses(row.get("from"))
    report.missing_from += not senders
    subject = " ".join(str(row.get("subject") or "").split())
    report.missing_subject += not subject
    body = str(row.get("body") or "")
    report.empty_body += not body.strip()
    return Email(message_id=mid, date=_date(row.get("date"), report), subject=subject,
                 from_address=senders[0] if senders else "", to=parse_addresses(row.get("to")),
                 cc=parse_addresses(row.get("cc")), bcc=parse_addresses(row.get("bcc")), body=body,
                 file_name=row.get("file_name") or where)


def _parquet_records(files: list[Path], owner: str | None, report: IngestReport,
                     batch_size: int) -> Iterator[tuple[Email, list[str]]]:
    import pyarrow.parquet as pq

    owners = [owner.lower()] if owner else []
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:
            report.error(str(f), f"unreadable parquet: {e}")
            continue
        names = set(pf.schema_arrow.names)
        if not {"body", "from"} <= names:
            raise IngestError(f"{f} is not the Enron parquet layout: it has columns {sorted(names)}, "
                              f"expected {list(PARQUET_COLUMNS)}")
        cols = [c for c in PARQUET_COLUMNS if c in names]
        n = 0
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                report.seen += 1
                where = f"{f.name}:{n + i}"
                try:
                    email = _row_email({c: data[c][i] for c in cols}, where, report)
                except Exception as e:
                    report.error(where, f"{type(e).__name__}: {e}")
                    continue
                report.yielded += 1
                yield email, owners
            n += batch.num_rows


def read_parquet(path: str | Path, owner: str | None = None, report: IngestReport | None = None,
                 batch_size: int = 2048) -> RecordStream:
    """Records of every row of an Enron-layout parquet file or directory of files.

    Rows have no owner (membership comes from their addresses) unless ``owner`` is given."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"parquet source {path} does not exist")
    report = report or IngestReport(source=str(path), kind="parquet")
    return RecordStream(report, _parquet_records(_parquet_files(path), owner, report, batch_size))


# ---------------------------------------------------------------- one call for the CLI


def detect_kind(source: str | Path) -> str:
    """``parquet`` (a .parquet file or a folder holding some), ``mbox`` (a file starting with
    ``From `` or named .mbox) or ``maildir`` (any other folder)."""
    source = Path(source)
    if source.is_dir():
        return "parquet" if next(source.rglob("*.parquet"), None) else "maildir"
    if not source.is_file():
        raise IngestError(f"mail source {source} does not exist")
    if source.suffix == ".parquet":
        return "parquet"
    with open(source, "rb") as f:
        head = f.read(5)
    if head == b"From " or source.suffix in (".mbox", ".mbx"):
        return "mbox"
    raise IngestError(f"cannot tell what {source} is: expected a .parquet file, an mbox file "
                      "or a maildir folder (pass the kind explicitly)")


def build_db(source: str | Path, kind: str, db_path: str | Path, owner: str | None = None,
             options: BuildOptions | None = None, progress: bool = True) -> tuple[BuildReport, IngestReport]:
    """Read ``source`` (``kind`` parquet | maildir | mbox | auto) and build the store at ``db_path``."""
    from inboxrl.email.store import build_store

    if kind == "auto":
        kind = detect_kind(source)
    readers = {"parquet": read_parquet, "maildir": read_maildir, "mbox": read_mbox}
    if kind not in readers:
        raise IngestError(f"unknown source kind {kind!r}: use one of auto, {', '.join(readers)}")
    stream = readers[kind](source, owner=owner)
    build = build_store(db_path, stream, options or BuildOptions(), progress=progress)
    return build, stream.report
