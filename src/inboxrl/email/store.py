"""The email store: SQLite with an FTS5 index, inbox-scoped search and read.

Schema (``SCHEMA_VERSION`` 3, SQL in :mod:`inboxrl.email.store_schema`):

* ``emails(id, message_id, date, subject, from_address, from_name, body, body_truncated,
  file_name, content_hash, names, inboxes)``: one row per message, keyed by ``id``. The
  Message-ID is *not* unique: two different messages may carry the same one (an attacker can
  send a mail under any id), and each stays in its own inboxes (see
  :mod:`inboxrl.email.store_build`). ``date`` is UTC ``YYYY-MM-DD HH:MM:SS``; addresses are
  stored lower-cased and compared case-insensitively; ``names`` holds the display names of the
  sender and recipients; ``content_hash`` is a hash of the content, an order-free tie-break.
* ``emails_fts``: FTS5 over ``subject, body, names, inboxes``, an external-content table on
  ``emails`` (porter stemming, unicode61 with diacritics folded), kept in sync by the
  ``emails_fts_a{i,u,d}`` triggers. ``emails.inboxes`` holds one token ``m<key>`` per inbox of
  the message (keys in ``inbox_keys``), maintained by the ``inbox_members_a{i,d}`` triggers: a
  search intersects the keywords with the inbox token inside FTS5, so a common word in a large
  store stays fast.
* ``recipients(email_id, address, kind, name)`` with ``kind`` in to / cc / bcc.
* ``inbox_members(inbox, email_id, owned)``: a message belongs to an inbox when that address
  sent it, received it (to / cc / bcc) or when it was ingested for that owner (``owned`` = 1).
  This table is the authority: every search and read joins it, and every query names the inbox.
* ``message_aliases(message_id, email_id)``: ids of skipped content duplicates (the same mail
  under another Message-ID, e.g. in two Enron folders); ``read`` resolves them within the inbox.
* ``store_meta(key, value)``: ``format = inboxrl-email-store`` marks the file as ours.

Date filters: ``sent_after`` is inclusive (the message was sent on that day or later),
``sent_before`` is exclusive (sent strictly before that day), as in ART-E.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from inboxrl.email.mail_text import clean_address, clean_text
from inboxrl.email.store_schema import FORMAT, SCHEMA_VERSION
from inboxrl.email.types import Email, Scenario, SearchHit

SNIPPET_TOKENS = 16
_BRACKETS = "<>"
_NAMED_ADDRESS = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>")


class StoreError(Exception):
    """The store cannot be opened or built; the message says why in one line."""


def fts_query(keywords: Sequence[str] | str) -> str | None:
    """The FTS5 MATCH expression of ``keywords``, ANDed, or None when none is usable.

    Each keyword becomes one FTS5 string (a phrase when it holds several words) with inner
    double quotes doubled, so no model text is ever read as FTS syntax. Keywords without a
    letter or digit (empty, whitespace, bare punctuation) would tokenize to nothing and are
    dropped."""
    if isinstance(keywords, str):
        keywords = [keywords]
    parts = []
    for k in keywords:
        k = clean_text(k).strip()
        if any(ch.isalnum() for ch in k):
            parts.append('"' + k.replace('"', '""') + '"')
    return " AND ".join(parts) if parts else None


def _id_variants(message_id: Any) -> list[str]:
    """The id as given (stripped) and with angle brackets added or removed."""
    mid = clean_text(message_id).strip()
    bare = mid.strip(_BRACKETS)
    return list(dict.fromkeys([mid, f"<{bare}>", bare]))


class EmailStore:
    """Read-only, thread-safe access to a built store. Never raises on model-supplied strings."""

    def __init__(self, db_path: str | Path):
        self.path = Path(db_path)
        if not self.path.is_file():
            raise StoreError(f"email store {self.path} does not exist (build one with `inboxrl build-db`)")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            row = self._conn.execute("SELECT value FROM store_meta WHERE key = 'format'").fetchone()
            version = self._conn.execute(
                "SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path} is not an inboxrl email store ({e})") from None
        if row is None or row[0] != FORMAT:
            self._conn.close()
            raise StoreError(f"{self.path} is not an inboxrl email store (no format marker)")
        if version is None or version[0] != SCHEMA_VERSION:
            self._conn.close()
            raise StoreError(f"{self.path} has schema version {version and version[0]}, "
                             f"this inboxrl reads version {SCHEMA_VERSION}; rebuild it")
        ids_by_date = self._conn.execute("SELECT value FROM store_meta WHERE key = 'ids_by_date'").fetchone()
        # ids numbered by (date, arrival) make rowid order the newest-first order (store_build)
        self._newest_first = "f.rowid DESC" if ids_by_date and ids_by_date[0] == "1" else "e.date DESC, e.id DESC"
        self._conn.execute("PRAGMA query_only = 1")
        self._conn.execute("PRAGMA mmap_size = 1073741824")
        self._conn.execute("PRAGMA cache_size = -65536")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "EmailStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def search(self, inbox: str, keywords: Sequence[str] | str, from_addr: str | None = None,
               to_addr: str | None = None, sent_after: str | None = None,
               sent_before: str | None = None, max_results: int = 10) -> list[SearchHit]:
        """Messages of ``inbox`` matching every keyword and every filter, newest first.

        Keywords match subject, body or the display names of sender and recipients (stemmed,
        case and accent insensitive); a multi-word keyword matches as a phrase. ``from_addr`` /
        ``to_addr`` are exact addresses (case-insensitive; ``to_addr`` matches to, cc or bcc).
        ``sent_after`` is inclusive, ``sent_before`` exclusive (``YYYY-MM-DD``). With no usable
        keyword the newest messages passing the filters are returned (the ``search_emails``
        tool refuses such keywords before they get here). The snippet is FTS5's ``snippet()``
        of the body with matches in ``<b>..</b>`` (the start of the body without keywords)."""
        inbox = _inbox(inbox)
        limit = int(max_results)
        if limit <= 0:
            return []
        match = fts_query(keywords)
        inbox_token = self._inbox_token(inbox) if match is not None else None
        if match is not None and inbox_token is None:
            return []
        where, params = _filters(inbox, from_addr, to_addr, sent_after, sent_before)
        cols = "e.id, e.message_id, e.subject, e.from_address, e.date, e.from_name"
        if match is None:
            sql = (f"SELECT {cols}, substr(e.body, 1, 160) FROM inbox_members m "
                   f"JOIN emails e ON e.id = m.email_id WHERE {where} "
                   "ORDER BY e.date DESC, e.id DESC LIMIT ?")
            rows = self._all(sql, [*params, limit])
            return [SearchHit(r[1], r[2], r[3], r[4], " ".join(r[6].split()), r[5]) for r in rows]
        sql = (f"SELECT {cols} FROM emails_fts f "
               "CROSS JOIN inbox_members m ON m.email_id = f.rowid "
               "JOIN emails e ON e.id = f.rowid "
               f"WHERE emails_fts MATCH ? AND {where} "
               f"ORDER BY {self._newest_first} LIMIT ?")
        scoped = f"inboxes : {inbox_token} AND {{subject body names}} : ({match})"
        with self._lock:
            rows = self._conn.execute(sql, [scoped, *params, limit]).fetchall()
            hits = []
            for r in rows:
                snip = self._conn.execute(
                    "SELECT snippet(emails_fts, 1, '<b>', '</b>', '…', ?) FROM emails_fts "
                    "WHERE emails_fts MATCH ? AND rowid = ?",
                    (SNIPPET_TOKENS, f"{{subject body names}} : ({match})", r[0])).fetchone()
                text = " ".join((snip[0] if snip else "").split())
                hits.append(SearchHit(r[1], r[2], r[3], r[4], text, r[5]))
        return hits

    def _inbox_token(self, inbox: str) -> str | None:
        rows = self._all("SELECT key FROM inbox_keys WHERE address = ?", (inbox,))
        return f"m{rows[0][0]}" if rows else None

    def _find(self, inbox: str, message_id: Any) -> tuple | None:
        """The row ``read`` shows for ``message_id`` in ``inbox``: the id as given, else with
        brackets added or removed, as a stored message's id or a content duplicate's alias.
        Several messages of the inbox under one id resolve the same way whatever order the store
        was built in: one ingested for this inbox's owner first, then the earliest date, then
        the content hash (the build report counts such ids)."""
        cols = ("e.id, e.message_id, e.date, e.subject, e.from_address, e.body, e.file_name, "
                "e.from_name, e.body_truncated")
        rows = self._candidates(inbox, message_id, cols,
                                "ORDER BY m.owned DESC, e.date, e.content_hash, e.id LIMIT 1")
        return rows[0] if rows else None

    def _candidates(self, inbox: str, message_id: Any, cols: str, tail: str) -> list[tuple]:
        """``cols`` of the inbox's messages answering to the first variant of the id that any does."""
        inbox = _inbox(inbox)
        sql = (f"SELECT {cols} FROM (SELECT id AS eid FROM emails WHERE message_id = ?1 UNION "
               "SELECT email_id FROM message_aliases WHERE message_id = ?1) c "
               f"JOIN emails e ON e.id = c.eid JOIN inbox_members m ON m.email_id = e.id AND m.inbox = ?2 {tail}")
        for mid in _id_variants(message_id):
            rows = self._all(sql, (mid, inbox))
            if rows:
                return rows
        return []

    def id_matches(self, inbox: str, message_id: str) -> int:
        """How many messages of ``inbox`` answer to ``message_id`` (more than 1: ``read`` picks one)."""
        return len(self._candidates(inbox, message_id, "e.id", ""))

    def read(self, inbox: str, message_id: str) -> Email | None:
        """The full message, or None when no message with that id belongs to ``inbox``.

        The id is matched as given and with its angle brackets added or removed; the id of a
        skipped content duplicate gives the stored copy (whose ``message_id`` is returned).
        ``inbox`` is required: no read ever looks outside one inbox."""
        row = self._find(inbox, message_id)
        if row is None:
            return None
        eid, mid, date, subject, sender, body, file_name, from_name, truncated = row
        kinds: dict[str, list[str]] = {"to": [], "cc": [], "bcc": []}
        names = {sender: from_name} if from_name else {}
        for address, kind, name in self._all(
                "SELECT address, kind, name FROM recipients WHERE email_id = ? ORDER BY rowid", (eid,)):
            kinds[kind].append(address)
            if name:
                names.setdefault(address, name)
        return Email(message_id=mid, date=date, subject=subject, from_address=sender,
                     to=kinds["to"], cc=kinds["cc"], bcc=kinds["bcc"], body=body, file_name=file_name,
                     names=names, body_truncated=bool(truncated))

    def in_inbox(self, inbox: str, message_id: str) -> bool:
        """Whether a message with this id exists and belongs to ``inbox``."""
        return self._find(inbox, message_id) is not None

    def inboxes(self) -> list[str]:
        """Every inbox address (sender, recipient or owner of at least one message), sorted."""
        return [r[0] for r in self._all(
            "SELECT address FROM inbox_keys k WHERE EXISTS "
            "(SELECT 1 FROM inbox_members m WHERE m.inbox = k.address) ORDER BY address")]

    def inbox_size(self, inbox: str) -> int:
        """Number of messages in ``inbox``."""
        return self._all("SELECT COUNT(*) FROM inbox_members WHERE inbox = ?", (_inbox(inbox),))[0][0]

    def count(self) -> int:
        """Number of stored messages."""
        return self._all("SELECT COUNT(*) FROM emails")[0][0]

    def meta(self) -> dict[str, str]:
        """The ``store_meta`` table: format, schema version, build time, build report (JSON)."""
        return dict(self._all("SELECT key, value FROM store_meta"))


def _inbox(inbox: Any) -> str:
    """The inbox address every query is scoped to; a missing one is a caller bug, never "all"."""
    if not isinstance(inbox, str) or not inbox.strip():
        raise ValueError(f"an inbox address is required, got {inbox!r}")
    return clean_address(inbox)


def _address(text: str) -> str:
    """An address filter as given, or the address inside ``Name <address>`` (the form results show)."""
    m = _NAMED_ADDRESS.search(clean_text(text))
    return clean_address(m.group(1) if m else text)


def _filters(inbox: str, from_addr: str | None, to_addr: str | None, sent_after: str | None,
             sent_before: str | None) -> tuple[str, list[str]]:
    """The WHERE clause (over ``m`` = inbox_members, ``e`` = emails) of a search and its values."""
    where, params = ["m.inbox = ?"], [inbox]
    if from_addr:
        where.append("e.from_address = ?")
        params.append(_address(from_addr))
    if to_addr:
        where.append("EXISTS (SELECT 1 FROM recipients r WHERE r.email_id = e.id AND r.address = ?)")
        params.append(_address(to_addr))
    if sent_after:
        where.append("e.date >= ?")
        params.append(clean_text(sent_after).strip())
    if sent_before:
        where.append("e.date < ?")
        params.append(clean_text(sent_before).strip())
    return " AND ".join(where), params


def check_scenarios(db_path: str | Path, scenarios: Iterable[Scenario]) -> list[str]:
    """Ids of the scenarios with a reference message missing from the store or from their inbox."""
    with EmailStore(db_path) as store:
        return [s.id for s in scenarios
                if not s.message_ids or not all(store.in_inbox(s.inbox_address, m) for m in s.message_ids)]


def ambiguous_scenarios(db_path: str | Path, scenarios: Iterable[Scenario]) -> list[str]:
    """Ids of the scenarios with a reference id that more than one message of their inbox has
    (the scenario still resolves, to the message ``read`` picks)."""
    with EmailStore(db_path) as store:
        return [s.id for s in scenarios if any(store.id_matches(s.inbox_address, m) > 1 for m in s.message_ids)]


# the build side lives in store_build; re-exported for `from inboxrl.email.store import build_store`
from inboxrl.email.store_build import StoreBuilder, build_store, content_key, run_script  # noqa: E402,F401
