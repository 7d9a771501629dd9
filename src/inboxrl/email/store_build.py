"""Building an email store: clean, de-duplicate and batch ``(Email, owners)`` records into a
fresh SQLite file, written atomically (see :mod:`inboxrl.email.store` for the schema and the
read side, docs/architecture.md for the identity rules).

Identity: a row is one message, keyed by the store (``emails.id``), never by its Message-ID
alone. The same id with the same content (sender, date, subject, body, recipients) is the same
message met again (in a second mailbox): one row, its new owners added. The same id with other
content is another message: a row of its own, in its own inboxes only, so no mail can reach an
inbox by borrowing an id. The same content under another id is kept once, the other id an alias.
"""
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

from inboxrl.email.build_report import MAX_SHARED_ID_SAMPLES, BuildOptions, BuildReport, IngestReport
from inboxrl.email.mail_text import DEFAULT_DATE, clean_address, clean_text, normalize_date, normalize_message_id
from inboxrl.email.store_schema import FORMAT, SCHEMA_INDEXES, SCHEMA_TABLES, SCHEMA_TRIGGERS, SCHEMA_VERSION
from inboxrl.email.types import Email

KINDS = ("to", "cc", "bcc")


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
    """A signed 64-bit hash of ``parts`` (collisions are negligible at 10^6 messages)."""
    data = "\x1f".join(parts).encode("utf-8", "replace")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


class StoreBuilder:
    """Cleans, de-duplicates and batches records into an open, empty database."""

    def __init__(self, conn: sqlite3.Connection, options: BuildOptions, report: BuildReport,
                 staged: bool = False):
        """``staged``: rows go to the attached ``stage.arrivals`` table first and ``finish``
        numbers them by date (see :meth:`_number_by_date`); otherwise straight into ``emails``."""
        self.conn, self.options, self.report, self.staged = conn, options, report, staged
        report.max_recipients, report.max_body_chars = options.max_recipients, options.max_body_chars
        self.started = time.perf_counter()
        self.by_message: dict[int, int] = {}  # key of (id, content) -> row
        self.by_content: dict[int, int] = {}  # key of content -> row
        self.id_rows: dict[int, int] = {}  # key of id -> first row under it
        self.shared_ids: set[str] = set()  # ids under which more than one row is stored
        self.next_id = 1
        self.inbox_keys: dict[str, int] = {}
        self.late_members: list[tuple[str, int]] = []  # owners of a message met again
        self.emails: list[tuple] = []
        self.aliases: list[tuple[str, int]] = []
        self.recipients: list[tuple] = []
        self.members: list[tuple] = []

    def add(self, email: Email, owners: Iterable[str]) -> None:
        """Queue one record for insertion, or count why it is skipped or merged."""
        rep, opt = self.report, self.options
        rep.read += 1
        date = normalize_date(email.date)
        if date is None or date == DEFAULT_DATE:
            date = DEFAULT_DATE
            rep.missing_date_defaulted += 1
        mid = normalize_message_id(email.message_id)
        rep.missing_id_generated += not mid
        owners = [clean_address(o) for o in owners or () if o and str(o).strip()]
        kinds = {k: [clean_address(a) for a in getattr(email, k) or () if a and str(a).strip()] for k in KINDS}
        if sum(len(v) for v in kinds.values()) > opt.max_recipients:
            rep.mass_mail_skipped += 1
            return
        body, subject = clean_text(email.body or ""), clean_text(email.subject or "")
        if len(body.strip()) < opt.min_body_chars:
            rep.too_short_skipped += 1
            return
        sender = clean_address(email.from_address or "")
        content = content_key(sender, date, subject, body, *("\x1e".join(kinds[k]) for k in KINDS))
        if not mid:
            mid = f"<{content & 0xFFFFFFFFFFFFFFFF:016x}@inboxrl.generated>"
        if self._merged(mid, content, owners):
            return
        self._store(email, mid, date, subject, sender, body, kinds, owners, content)

    def _merged(self, mid: str, content: int, owners: list[str]) -> bool:
        """Whether the record is a message already stored (then its owners join that row)."""
        rep = self.report
        message = content_key(mid, str(content))
        row = self.by_message.get(message)
        if row is None and content in self.by_content:
            row = self.by_message[message] = self.by_content[content]
            self.aliases.append((mid, row))
            rep.duplicate_content += 1
        elif row is not None:
            rep.same_message += 1
        if row is None:
            return False
        self.late_members.extend((o, row) for o in owners)
        return True

    def _store(self, email: Email, mid: str, date: str, subject: str, sender: str, body: str,
               kinds: dict[str, list[str]], owners: list[str], content: int) -> None:
        rep, opt = self.report, self.options
        eid = self.next_id
        self.next_id += 1
        self.by_message[content_key(mid, str(content))] = self.by_content[content] = eid
        id_key = content_key(mid)
        if self.id_rows.setdefault(id_key, eid) != eid:
            rep.id_reused += 1
            self.shared_ids.add(mid)
        truncated = len(body) > opt.max_body_chars
        if truncated:
            body = body[:opt.max_body_chars]
            rep.truncated += 1
        names = {clean_address(a): " ".join(clean_text(n).split()) for a, n in (email.names or {}).items() if n}
        rep.names += sum(1 for n in names.values() if n)
        addresses = {sender, *owners}
        for kind, addrs in kinds.items():
            self.recipients.extend((eid, a, kind, names.get(a, "")) for a in addrs)
            addresses.update(addrs)
        addresses.discard("")
        owned = set(owners)
        self.members.extend((a, eid, int(a in owned)) for a in addresses)
        tokens = " ".join(sorted(self._token(a) for a in addresses))
        shown = dict.fromkeys(n for n in (names.get(a) for a in (sender, *[a for k in KINDS for a in kinds[k]])) if n)
        self.emails.append((eid, mid, date, subject, sender, names.get(sender, ""), body, int(truncated),
                            email.file_name, content, " ; ".join(shown), tokens))
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
        table = "stage.arrivals" if self.staged else "emails"
        c.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self.emails)
        c.executemany("INSERT INTO recipients VALUES (?, ?, ?, ?)", self.recipients)
        c.executemany("INSERT INTO inbox_members VALUES (?, ?, ?)", self.members)
        self.report.recipients += len(self.recipients)
        self.emails, self.recipients, self.members = [], [], []

    def _number_by_date(self) -> None:
        """Copy the staged rows into ``emails`` numbered by (date, arrival), and renumber every
        reference to them: with ids in date order, FTS5 walks an inbox's matches newest first
        and stops at the limit instead of ranking every match of a frequent word or name."""
        c = self.conn
        c.execute("CREATE TEMP TABLE idmap(old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
        c.execute("INSERT INTO idmap SELECT id, ROW_NUMBER() OVER (ORDER BY date, id) FROM stage.arrivals")
        c.execute("INSERT INTO emails SELECT m.new, a.message_id, a.date, a.subject, a.from_address, a.from_name, "
                  "a.body, a.body_truncated, a.file_name, a.content_hash, a.names, a.inboxes "
                  "FROM idmap m JOIN stage.arrivals a ON a.id = m.old ORDER BY m.new")
        for table in ("recipients", "inbox_members"):
            c.execute(f"UPDATE {table} SET email_id = (SELECT new FROM idmap WHERE old = {table}.email_id)")
        new_of = dict(c.execute("SELECT old, new FROM idmap WHERE old != new"))
        self.late_members = [(o, new_of.get(e, e)) for o, e in self.late_members]
        self.aliases = [(mid, new_of.get(e, e)) for mid, e in self.aliases]
        c.execute("DROP TABLE idmap")
        c.execute("DELETE FROM stage.arrivals")

    def _add_late_members(self) -> None:
        """Owners of messages met again join the kept row (owned; inbox token added once)."""
        c = self.conn
        late = sorted(set(self.late_members))
        late_tokens = [(self._token(o), o, eid) for o, eid in late]
        c.executemany("INSERT INTO inbox_keys VALUES (?, ?)", ((k, a) for a, k in self.inbox_keys.items()))
        c.executemany("UPDATE emails SET inboxes = inboxes || ' ' || ?1 WHERE id = ?3 AND NOT EXISTS "
                      "(SELECT 1 FROM inbox_members WHERE email_id = ?3 AND inbox = ?2)", late_tokens)
        c.executemany("INSERT INTO inbox_members VALUES (?, ?, 1) "
                      "ON CONFLICT(inbox, email_id) DO UPDATE SET owned = 1", late)
        c.executemany("INSERT OR IGNORE INTO message_aliases VALUES (?, ?)", self.aliases)

    def _count_shared_ids(self) -> None:
        """(inbox, id) pairs more than one stored message answers to (only ids stored twice)."""
        rep, samples = self.report, []
        for mid in sorted(self.shared_ids):
            rows = self.conn.execute(
                "SELECT m.inbox, COUNT(*) FROM emails e JOIN inbox_members m ON m.email_id = e.id "
                "WHERE e.message_id = ? GROUP BY m.inbox HAVING COUNT(*) > 1 ORDER BY m.inbox", (mid,)).fetchall()
            rep.ids_shared_in_inbox += len(rows)
            samples.extend(f"{mid} x{n} in {inbox}" for inbox, n in rows)
        rep.shared_id_examples = samples[:MAX_SHARED_ID_SAMPLES]

    def finish(self) -> None:
        """Indexes, late owners, the FTS index in one pass, the sync triggers and the format marker."""
        self.flush()
        c = self.conn
        if self.staged:
            self._number_by_date()
        run_script(c, SCHEMA_INDEXES)
        self._add_late_members()
        self._count_shared_ids()
        c.execute("INSERT INTO emails_fts(emails_fts) VALUES ('rebuild')")
        c.execute("INSERT INTO emails_fts(emails_fts) VALUES ('optimize')")
        run_script(c, SCHEMA_TRIGGERS)
        rep = self.report
        rep.memberships = c.execute("SELECT COUNT(*) FROM inbox_members").fetchone()[0]
        rep.inboxes = len(self.inbox_keys)  # every key was made for a membership row
        rep.seconds = time.perf_counter() - self.started
        meta = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "ids_by_date": str(int(self.staged)),
                "built_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                "build_report": json.dumps(rep.to_dict())}
        c.executemany("INSERT INTO store_meta VALUES (?, ?)", meta.items())
        c.execute("ANALYZE")


def build_store(db_path: str | Path, records: Iterable[tuple[Email, Sequence[str]]],
                options: BuildOptions = BuildOptions(), progress: bool = True) -> BuildReport:
    """Build a store at ``db_path`` from ``(Email, owners)`` records, replacing any file there.

    The database is written to a temporary file beside the target and renamed over it only
    when complete, so a failed or interrupted build never leaves a partial store at
    ``db_path``. Messages are identified as the module docstring says; mass mails and bodies
    over the limits are handled as ``options`` says. Every decision is counted in the report;
    when ``records`` is a reader's stream (it has an ``IngestReport`` as ``.report``), what the
    reader skipped is copied in by reason, so one report names every reason a message is missing."""
    target = Path(db_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    report = BuildReport(db_path=str(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".building", dir=target.parent)
    os.close(fd)
    stage = tmp + ".stage"  # the rows in arrival order, until they are numbered by date
    start = time.perf_counter()
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -262144",
                           "temp_store = MEMORY", "locking_mode = EXCLUSIVE"):
                conn.execute(f"PRAGMA {pragma}")
            conn.executescript(SCHEMA_TABLES)
            if options.order_by_date:
                conn.execute("ATTACH DATABASE ? AS stage", (stage,))
                conn.execute("PRAGMA stage.journal_mode = OFF")
                conn.execute("CREATE TABLE stage.arrivals AS SELECT * FROM main.emails WHERE 0")
            conn.execute("BEGIN")
            builder = StoreBuilder(conn, options, report, staged=options.order_by_date)
            for email, owners in tqdm(records, disable=not progress, unit=" emails",
                                      desc="build-db", mininterval=1.0):
                builder.add(email, owners)
            source = getattr(records, "report", None)
            if isinstance(source, IngestReport):
                report.source_skipped = dict(source.skipped)
            builder.finish()
            conn.execute("COMMIT")
            if options.order_by_date:
                conn.execute("DETACH DATABASE stage")
        finally:
            conn.close()
        if os.path.exists(stage):
            os.unlink(stage)
        report.seconds = time.perf_counter() - start
        os.replace(tmp, target)
    except BaseException:
        for leftover in (tmp, tmp + "-journal", stage):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    return report
