"""Readers of real mail into ``(Email, owners)`` records for :func:`inboxrl.email.store.build_store`.

* ``read_parquet``: the public Enron parquet layout (columns ``message_id, subject, from, to, cc,
  bcc, date, body, file_name``; to / cc / bcc as arrays or comma-separated strings, where
  ``"Name" <address>`` entries give display names), one file or a directory of them, read in row
  batches. The mailbox owner of a row (``allen-p/inbox/1.``) is a folder name, not an address,
  so a row has no owner unless the caller passes ``owner``: inbox membership comes from its
  from / to / cc / bcc addresses.
* ``read_maildir``: a real Maildir (the folder holding ``cur/new/tmp``, Maildir++ ``.Sub``
  folders included, ``tmp`` never read), a folder of such Maildirs (one per user), CMU Enron
  trees (``maildir/<user>/<folder>/<n>.``) or any folder tree of message files. Owner: the
  ``owner`` argument for the whole tree; otherwise per mailbox the most frequent To address of
  its messages (a Maildir: ``cur`` + ``new``; an Enron user folder: ``inbox/``, falling back to
  ``<user>@enron.com``). A Maildir whose owner cannot be told stops with an error asking for
  ``--owner``. A root that itself is a Maildir or holds an ``inbox`` folder is one mailbox.
* ``read_mbox``: one mbox file; owner the argument, else the most frequent To address in it.

Messy mail never stops a run: missing headers get defaults, unparseable dates become
``DEFAULT_DATE``, multipart mail gives its text/plain part (else its HTML part as text), and
unreadable or header-less files are skipped, by reason (:mod:`inboxrl.email.mail_parse` reads one
message). Everything is counted in the stream's ``IngestReport``; a message without an id keeps
``""`` and the store builder generates one, so both reports count it.
"""
from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inboxrl.email.build_report import BuildOptions, BuildReport, IngestReport
from inboxrl.email.mail_parse import common_to, message_date, parse_message
from inboxrl.email.mail_text import normalize_message_id, parse_named_addresses
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


def _parse_file(path: Path, where: str, report: IngestReport) -> Email | None:
    report.seen += 1
    try:
        return parse_message(path.read_bytes(), where, report)
    except OSError as e:
        report.error(where, f"{type(e).__name__}: {e}", "unreadable file")
    except Exception as e:  # a parser bug on odd input: skip, count, go on
        report.error(where, f"{type(e).__name__}: {e}", "unparseable message")
    return None


# ---------------------------------------------------------------- maildir

MAILDIR_PARTS = ("cur", "new")  # tmp holds mail still being delivered: never read


def _message_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def is_maildir(folder: Path) -> bool:
    """A real Maildir folder: it holds ``cur`` and ``new`` (and usually ``tmp``)."""
    return all((folder / part).is_dir() for part in MAILDIR_PARTS)


def _maildir_files(box: Path) -> Iterator[Path]:
    """A Maildir's messages: its ``cur`` and ``new``, then each Maildir++ subfolder's (``.Sent``)."""
    folders = [box] + [d for d in sorted(box.iterdir()) if d.name.startswith(".") and is_maildir(d)]
    for folder in folders:
        for part in MAILDIR_PARTS:
            yield from (p for p in sorted((folder / part).iterdir()) if p.is_file() and not p.name.startswith("."))


def _box_files(box: Path) -> Iterator[Path]:
    return _maildir_files(box) if is_maildir(box) else _message_files(box)


def _inbox_folder(mailbox_dir: Path) -> Path | None:
    for child in sorted(mailbox_dir.iterdir()):
        if child.is_dir() and child.name.lower() == "inbox":
            return child
    return None


def _sample_owner(files: Iterator[Path]) -> str | None:
    sample = (p for i, p in enumerate(files) if i < OWNER_SAMPLE_FILES)
    return common_to(p.read_bytes()[:65536] for p in sample)


def derive_maildir_owner(mailbox_dir: str | Path) -> str:
    """The owner address of one user's mailbox folder.

    A real Maildir (the folder holding ``cur/new/tmp``): the most frequent To address of its
    ``cur`` and ``new`` messages, else :class:`IngestError` asking for ``--owner``. A CMU Enron
    user folder: the most frequent To address of its ``inbox/`` (first ``OWNER_SAMPLE_FILES``
    files), else ``<folder name>@enron.com``."""
    mailbox_dir = Path(mailbox_dir)
    if is_maildir(mailbox_dir):
        owner = _sample_owner(_maildir_files(mailbox_dir))
        if owner:
            return owner
        raise IngestError(f"cannot tell whose mailbox the Maildir {mailbox_dir} is (its messages name no "
                          "To address); pass --owner ADDRESS")
    inbox = _inbox_folder(mailbox_dir)
    owner = _sample_owner(_message_files(inbox)) if inbox is not None else None
    return owner or f"{mailbox_dir.name.lower()}@enron.com"


def _mailboxes(root: Path, owner: str | None) -> list[tuple[Path, str | None]]:
    """The user mailboxes under ``root`` and their owners (see the module docstring)."""
    if owner:
        return [(root, owner.lower())]
    if is_maildir(root) or _inbox_folder(root) is not None:
        return [(root, derive_maildir_owner(root))]
    if any((root / part).is_dir() for part in ("cur", "new", "tmp")):
        raise IngestError(f"{root} looks like a damaged Maildir (it lacks cur/ or new/); pass --owner ADDRESS")
    boxes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return [(d, derive_maildir_owner(d)) for d in boxes] or [(root, None)]


def _maildir_records(root: Path, boxes: list[tuple[Path, str | None]],
                     report: IngestReport) -> Iterator[tuple[Email, list[str]]]:
    for box, box_owner in boxes:
        if box_owner:
            report.owners[box.name] = box_owner
        for path in _box_files(box):
            email = _parse_file(path, path.relative_to(root).as_posix(), report)
            if email is not None:
                report.yielded += 1
                yield email, [box_owner] if box_owner else []


def read_maildir(root: str | Path, owner: str | None = None,
                 report: IngestReport | None = None) -> RecordStream:
    """Records of every message file under ``root`` (see the module docstring for owners).
    Raises :class:`IngestError` up front when a mailbox's owner cannot be told."""
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"maildir {root} is not a directory")
    report = report or IngestReport(source=str(root), kind="maildir")
    return RecordStream(report, _maildir_records(root, _mailboxes(root, owner), report))


# ---------------------------------------------------------------- mbox


def _mbox_records(box: mailbox.mbox, name: str, owner: str | None,
                  report: IngestReport) -> Iterator[tuple[Email, list[str]]]:
    for i, key in enumerate(box.iterkeys()):
        report.seen += 1
        where = f"{name}#{i}"
        try:
            email = parse_message(box.get_bytes(key), where, report)
        except Exception as e:
            report.error(where, f"{type(e).__name__}: {e}", "unparseable message")
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
        owner = common_to(box.get_bytes(k) for k in box.iterkeys())
    if owner:
        report.owners[path.name] = owner.lower()
    return RecordStream(report, _mbox_records(box, path.name, owner and owner.lower(), report))


# ---------------------------------------------------------------- parquet


def _parquet_files(path: Path) -> list[Path]:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise IngestError(f"no .parquet files under {path}")
    return files


def _people(row: dict[str, Any], names: dict[str, str]) -> dict[str, list[str]]:
    """The addresses of each address column; display names collected into ``names``."""
    out = {}
    for column in ("from", "to", "cc", "bcc"):
        pairs = parse_named_addresses(row.get(column))
        out[column] = [a for _, a in pairs]
        for name, addr in pairs:
            if name:
                names.setdefault(addr, name)
    return out


def _row_email(row: dict[str, Any], where: str, report: IngestReport) -> Email:
    mid = normalize_message_id(row.get("message_id") or "")
    report.missing_message_id += not mid
    names: dict[str, str] = {}
    people = _people(row, names)
    report.missing_from += not people["from"]
    subject = " ".join(str(row.get("subject") or "").split())
    report.missing_subject += not subject
    body = str(row.get("body") or "")
    report.empty_body += not body.strip()
    return Email(message_id=mid, date=message_date(row.get("date"), report), subject=subject,
                 from_address=people["from"][0] if people["from"] else "", to=people["to"],
                 cc=people["cc"], bcc=people["bcc"], body=body, file_name=row.get("file_name") or where,
                 names=names)


def _parquet_records(files: list[Path], owner: str | None, report: IngestReport,
                     batch_size: int) -> Iterator[tuple[Email, list[str]]]:
    import pyarrow.parquet as pq

    owners = [owner.lower()] if owner else []
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:
            report.error(str(f), f"unreadable parquet: {e}", "unreadable parquet file")
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
                    report.error(where, f"{type(e).__name__}: {e}", "unreadable row")
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
