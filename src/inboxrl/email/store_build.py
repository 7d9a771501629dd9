"""Building an email store (DESIGN.md §4): clean, de-duplicate and batch ``(Email, owners)``
records into a fresh SQLite file, written atomically (see :mod:`inboxrl.email.store` for the
schema and the read side)."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from inboxrl.email.build_report import (DEFAULT_DATE, FORMAT, SCHEMA_INDEXES, SCHEMA_TRIGGERS, SCHEMA_TABLES,
                                        SCHEMA_VERSION, BuildOptions, BuildReport, clean_address, clean_text,
                                        normalize_date)
from inboxrl.email.types import Email


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement inside the open transaction (``executescript``
    would commit first)."""
    statement = ""
    for line in script.strip().splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def content_key(*parts: str) -> int:
    """A 64-bit hash of ``parts`` (the de-duplication key; collisions are negligible at 10^6)."""
    data = "\x1f".join(parts).encode("utf-8", "replace")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class StoreBuilder:
    """Cleans, de-duplicates and batches records into an open, empty database."""

    def __init__(self, conn: sqlite3.Connection, options: BuildOptions, report: BuildReport):
        self.conn, self.options, self.report = conn, options, report
        self.started = time.perf_counter()
        self.by_id: dict[int, int] = {}
        self.by_content: dict[int, int] = {}
        self.next_id = 1
        self.inbox_keys: dict[str, int] = {}
        self.late_members: list[tuple[str, int]] = []  # owners of skipped duplicates
        self.emails: list[tuple] = []
        self.aliases: list[tuple[str, int]] = []
        self.recipients: list[tuple] = []
        self.members: list[tuple] = []

    def add(self, email: Email, owners: Iterable[str]) -> None:
        """Queue one record for insertion, or count why it is skipped or merged."""
        rep, opt = self.report, self.options
        rep.read += 1
        owners = [clean_address(o) for o in owners or () if o and str(o).strip()]
        kinds = {k: [clean_address(a) for a in getattr(email, k) or () if a and str(a).strip()]
                 for k in ("to", "cc", "bcc")}
        if sum(len(v) for v in kinds.values()) > opt.max_recipients:
            rep.mass_mail_skipped += 1
            return
        body, subject = clean_text(email.body or ""), clean_text(email.subject or "")
        sender = clean_address(email.from_address or "")
        if len(body.strip()) < opt.min_body_chars:
            rep.too_short_skipped += 1
            return
        date = normalize_date(email.date)
        if date is None:
            date = DEFAULT_DATE
            rep.missing_date_defaulted += 1
        content = content_key(sender, date, subject, body)
        mid = clean_text(email.message_id or "").strip()
        if not mid:
            mid = f"<{content:016x}@inboxrl.generated>"
            rep.missing_id_generated += 1
        id_key = content_key(mid)
        existing = self.by_id.get(id_key)
        if existing is None and content in self.by_content:
            existing = self.by_content[content]
            rep.duplicate_content += 1
            self.by_id[id_key] = existing
            self.aliases.append((mid, existing))
        elif existing is not None:
            rep.duplicate_ids += 1
        if existing is not None:
            rep.duplicates += 1
            self.late_members.extend((o, existing) for o in owners)
            return
        if len(body) > opt.max_body_chars:
            body = body[:opt.max_body_chars]
            rep.truncated += 1
        eid = self.next_id
        self.next_id += 1
        self.by_id[id_key] = eid
        self.by_content[content] = eid
        addresses = {sender, *owners}
        for kind, addrs in kinds.items():
            self.recipients.extend((eid, a, kind) for a in addrs)
            addresses.update(addrs)
        addresses.discard("")
        self.members.extend((a, eid) for a in addresses)
        tokens = " ".join(sorted(self._token(a) for a in addresses))
        self.emails.append((eid, mid, date, subject, sender, body, email.file_name, tokens))
        rep.stored += 1
        if len(self.emails) >= opt.batch_size:
            self.flush()

    def _token(self, address: str) -> str:
        key = self.inbox_keys.get(address)
        if key is None:
            key = self.inbox_keys[address] = len(self.inbox_keys) + 1
        return f"m{key}"

    def flush(self) -> None:
        """Insert the queued rows (one ``executemany`` per table)."""
        c = self.conn
        c.executemany("INSERT INTO emails VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.emails)
        c.executemany("INSERT INTO recipients VALUES (?, ?, ?)", self.recipients)
        c.executemany("INSERT INTO inbox_members VALUES (?, ?)", self.members)
        self.report.recipients += len(self.recipients)
        self.emails, self.recipients, self.members = [], [], []

    def finish(self) -> None:
        """Indexes, the FTS index in one pass, the sync triggers and the format marker."""
        self.flush()
        c = self.conn
        late = sorted(set(self.late_members))
        late_tokens = [(self._token(o), o, eid) for o, eid in late]
        c.executemany("INSERT OR IGNORE INTO message_aliases VALUES (?, ?)", self.aliases)
        c.executemany("INSERT INTO inbox_keys VALUES (?, ?)", ((k, a) for a, k in self.inbox_keys.items()))
        run_script(c, SCHEMA_INDEXES)
        c.executemany("UPDATE emails SET inboxes = inboxes || ' ' || ?1 WHERE id = ?3 AND NOT EXISTS "
                      "(SELECT 1 FROM inbox_members WHERE email_id = ?3 AND inbox = ?2)", late_tokens)
        c.executemany("INSERT OR IGNORE INTO inbox_members VALUES (?, ?)", late)
        c.execute("INSERT INTO emails_fts(emails_fts) VALUES ('rebuild')")
        c.execute("INSERT INTO emails_fts(emails_fts) VALUES ('optimize')")
        run_script(c, SCHEMA_TRIGGERS)
        rep = self.report
        rep.memberships = c.execute("SELECT COUNT(*) FROM inbox_members").fetchone()[0]
        rep.inboxes = len(self.inbox_keys)  # every key was made for a membership row
        rep.seconds = time.perf_counter() - self.started
        meta = {"format": FORMAT, "schema_version": SCHEMA_VERSION,
                "built_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                "build_report": json.dumps(rep.to_dict())}
        c.executemany("INSERT INTO store_meta VALUES (?, ?)", meta.items())
        c.execute("ANALYZE")


def build_store(db_path: str | Path, records: Iterable[tuple[Email, Sequence[str]]],
                options: BuildOptions = BuildOptions(), progress: bool = True) -> BuildReport:
    """Build a store at ``db_path`` from ``(Email, owners)`` records, replacing any file there.

    The database is written to a temporary file beside the target and renamed over it only
    when complete, so a failed or interrupted build never leaves a partial store at
    ``db_path``. Duplicates (same message id, or same sender+date+subject+body) are stored
    once, their owners added to the kept message's inboxes; mass mails and bodies over the
    limits are handled as ``options`` says. Every decision is counted in the report."""
    target = Path(db_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    report = BuildReport(db_path=str(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".building", dir=target.parent)
    os.close(fd)
    start = time.perf_counter()
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -262144",
                           "temp_store = MEMORY", "locking_mode = EXCLUSIVE"):
                conn.execute(f"PRAGMA {pragma}")
            conn.executescript(SCHEMA_TABLES)
            conn.execute("BEGIN")
            builder = StoreBuilder(conn, options, report)
            for email, owners in tqdm(records, disable=not progress, unit=" emails",
                                      desc="build-db", mininterval=1.0):
                builder.add(email, owners)
            builder.finish()
            conn.execute("COMMIT")
        finally:
            conn.close()
        report.seconds = time.perf_counter() - start
        os.replace(tmp, target)
    except BaseException:
        for leftover in (tmp, tmp + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    return report
