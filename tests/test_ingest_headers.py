"""What real mail headers carry into the store: Message-IDs as written, display names (RFC 2047
too) that search finds, three-digit-year dates, cp1252 bytes, Maildir owners, and ingest and
build reports that agree on every count and name every skip reason."""
from __future__ import annotations

import json

import pytest

from inboxrl.email import tools
from inboxrl.email.build_report import IngestReport
from inboxrl.email.ingest import IngestError, build_db, read_maildir
from inboxrl.email.mail_parse import parse_message
from inboxrl.email.mail_text import decode_bytes, normalize_date, normalize_message_id, parse_named_addresses
from inboxrl.email.store import EmailStore


def _msg(mid_line: str, body: str = "Body text.", extra: str = "", to: str = "jo@corp.com") -> bytes:
    return (f"{mid_line}\nDate: Mon, 14 May 2001 16:39:00 -0700\nFrom: ann@corp.com\nTo: {to}\n"
            f"Subject: s\n{extra}\n{body}\n").encode()


@pytest.mark.parametrize("header,expected", [
    ("Message-ID: <Mail2L:1:x@y>", "<Mail2L:1:x@y>"),
    ("Message-ID: <a,b@y>", "<a,b@y>"),
    ("Message-ID:\n  <folded.id@y>", "<folded.id@y>"),
    ("Message-ID: <id with  space@y>", "<id with space@y>"),
    ("Message-ID: <c@y> (added by the relay)", "<c@y>"),
    ("Message-ID: (comment) <d@y>", "<d@y>"),
    ("Message-ID: bare-id@y (note)", "bare-id@y"),
])
def test_message_id_is_taken_from_the_raw_header(header, expected):
    email = parse_message(_msg(header), "f", IngestReport())
    assert email.message_id == expected
    assert normalize_message_id(expected) == expected  # the builder's normalisation keeps it


def test_ids_the_email_package_would_cut_stay_distinct(tmp_path):
    box = tmp_path / "mail" / "jo" / "inbox"
    box.mkdir(parents=True)
    (box / "1.").write_bytes(_msg("Message-ID: <Mail2L:1:x@y>", "first note"))
    (box / "2.").write_bytes(_msg("Message-ID: <Mail2L:2:x@y>", "second note"))
    build, _ = build_db(tmp_path / "mail", "maildir", tmp_path / "m.db", progress=False)
    assert build.stored == 2 and build.id_reused == 0
    with EmailStore(tmp_path / "m.db") as store:
        assert store.read("jo@corp.com", "<Mail2L:1:x@y>").body.strip() == "first note"
        assert store.read("jo@corp.com", "<Mail2L:2:x@y>").body.strip() == "second note"


NAMED = b"""Message-ID: <n1@corp>
Date: Mon, 14 May 2001 16:39:00 -0700
From: =?utf-8?q?J=C3=B6n_Sm=C3=AFth?= <jon.smith@corp.com>
To: "Lee, Ann" <ann@corp.com>, bob@corp.com
Cc: =?iso-8859-1?b?UmVu6Q==?= <rene@corp.com>
Subject: Pipeline capacity

Capacity numbers attached.
"""


def test_display_names_are_stored_searchable_and_shown(tmp_path):
    assert parse_named_addresses("undisclosed-recipients:;") == []
    assert parse_named_addresses('Team: "Lee, Ann" <Ann@corp.com>, bob@corp.com;') == [("Lee, Ann", "ann@corp.com"),
                                                                                    ("", "bob@corp.com")]
    email = parse_message(NAMED, "f", IngestReport())
    assert email.names == {"jon.smith@corp.com": "Jön Smïth", "ann@corp.com": "Lee, Ann", "rene@corp.com": "René"}
    mbox = tmp_path / "box.mbox"
    mbox.write_bytes(b"From x Mon May 14 16:39:00 2001\n" + NAMED)
    build, _ = build_db(mbox, "mbox", tmp_path / "n.db", owner="ann@corp.com", progress=False)
    assert build.names == 3
    with EmailStore(tmp_path / "n.db") as store:
        for name in ("Jön", "jon smith", "smith", "Rene", "Lee"):
            assert [h.message_id for h in store.search("ann@corp.com", [name])] == ["<n1@corp>"], name
        assert store.search("ann@corp.com", ["Capacity"], from_addr="jon.smith@corp.com")
        # the form results show works as a filter too
        assert store.search("ann@corp.com", ["Capacity"], from_addr="Jön Smïth <Jon.Smith@corp.com>")
        assert store.search("ann@corp.com", ["Capacity"], to_addr='"Lee, Ann" <ann@corp.com>')
        assert not store.search("ann@corp.com", ["Capacity"], from_addr="Jön Smïth")
        hit = store.search("ann@corp.com", ["pipeline"])[0]
        assert hit.from_name == "Jön Smïth" and hit.to_dict()["from"] == "Jön Smïth <jon.smith@corp.com>"
        shown = json.loads(tools.render_email(store.read("ann@corp.com", "<n1@corp>")))["email"]
        assert shown["from"] == "Jön Smïth <jon.smith@corp.com>"
        assert shown["to"] == ["Lee, Ann <ann@corp.com>", "bob@corp.com"] and shown["cc"] == ["René <rene@corp.com>"]


def test_three_digit_year_dates_are_2002_and_reports_agree(tmp_path):
    assert normalize_date("Thu, 22 Aug 0102 10:00:00 -0500") == "2002-08-22 15:00:00"
    assert normalize_date("Thu, 22 Aug 102 10:00:00 +0000") == "2002-08-22 10:00:00"
    assert normalize_date("0102-08-22 10:00:00") == "2002-08-22 10:00:00"
    assert normalize_date("0001-01-01 00:00:00") is None
    assert normalize_date(normalize_date("Thu, 22 Aug 0102 10:00:00 -0500")) == "2002-08-22 15:00:00"
    box = tmp_path / "mail" / "jo" / "inbox"
    box.mkdir(parents=True)
    for i, date in enumerate(["Thu, 22 Aug 0102 10:00:00 -0500", "not a date", "", "Mon, 14 May 2001 16:39:00 -0700"]):
        raw = _msg(f"Message-ID: <d{i}@y>", f"note {i}").replace(b"Mon, 14 May 2001 16:39:00 -0700", date.encode())
        (box / f"{i}.").write_bytes(raw)
    (box / "junk.").write_bytes(b"\x00\x01 no headers")
    (box / "noid.").write_bytes(_msg("X-Nothing: 1", "no id"))
    build, ingest = build_db(tmp_path / "mail", "maildir", tmp_path / "d.db", progress=False)
    assert (ingest.bad_date, ingest.missing_date) == (1, 1)
    assert build.missing_date_defaulted == ingest.bad_date + ingest.missing_date == 2
    assert build.missing_id_generated == ingest.missing_message_id == 1
    assert build.read == ingest.yielded == 5 and ingest.seen == 6
    assert ingest.skipped == {"no mail headers": 1} and build.source_skipped == {"no mail headers": 1}
    assert "1 unreadable in the source: no mail headers" in build.summary()
    with EmailStore(tmp_path / "d.db") as store:
        assert store.read("jo@corp.com", "<d0@y>").date == "2002-08-22 15:00:00"
        meta = json.loads(store.meta()["build_report"])
        assert meta["source_skipped"] == {"no mail headers": 1} and meta["missing_date_defaulted"] == 2


def test_undeclared_8bit_text_is_cp1252_where_latin1_gives_controls():
    assert decode_bytes(b"world\x92s \x93best\x94 \x80 5", None) == ("world\u2019s \u201cbest\u201d \u20ac 5", True)
    assert decode_bytes(b"caf\xe9", None) == ("caf\xe9", True)  # no C1 byte: Latin-1
    assert decode_bytes(b"it\x92s", "iso-8859-1") == ("it\u2019s", False)  # declared Latin-1 holding cp1252
    raw = _msg("Message-ID: <w@y>", "").replace(b"\n\n", b"\n\nthe world\x92s largest\n")
    email = parse_message(raw, "f", IngestReport())
    assert "world\u2019s largest" in email.body and not any("\x80" <= ch <= "\x9f" for ch in email.body)


def _maildir(root, messages):
    for part in ("cur", "new", "tmp"):
        (root / part).mkdir(parents=True, exist_ok=True)
    for i, (part, raw) in enumerate(messages):
        (root / part / f"17000000{i}.M1P1.host:2,S").write_bytes(raw)


def test_maildir_owner_comes_from_the_folder_holding_cur_new_tmp(tmp_path):
    box = tmp_path / "jo"
    _maildir(box, [("cur", _msg("Message-ID: <m1@y>")), ("new", _msg("Message-ID: <m2@y>")),
                   ("tmp", _msg("Message-ID: <m3@y>"))])
    _maildir(box / ".Sent", [("cur", _msg("Message-ID: <m4@y>", to="pat@corp.com"))])
    stream = read_maildir(box)
    records = list(stream)
    assert stream.report.owners == {"jo": "jo@corp.com"}
    assert sorted(e.message_id for e, _ in records) == ["<m1@y>", "<m2@y>", "<m4@y>"]  # tmp is never read
    assert all(owners == ["jo@corp.com"] for _, owners in records)
    # a folder of Maildirs: one owner per user, never cur@ / new@ / tmp@
    _maildir(tmp_path / "users" / "a", [("cur", _msg("Message-ID: <a1@y>", to="alice@corp.com"))])
    _maildir(tmp_path / "users" / "b", [("new", _msg("Message-ID: <b1@y>", to="bob@corp.com"))])
    stream = read_maildir(tmp_path / "users")
    assert {tuple(o) for _, o in stream} == {("alice@corp.com",), ("bob@corp.com",)}
    assert stream.report.owners == {"a": "alice@corp.com", "b": "bob@corp.com"}


def test_maildir_without_an_owner_to_infer_asks_for_owner(tmp_path):
    box = tmp_path / "anon"
    _maildir(box, [("cur", b"Message-ID: <x@y>\nSubject: no recipients\n\nhi\n")])
    with pytest.raises(IngestError, match="pass --owner"):
        read_maildir(box)
    assert [o for _, o in read_maildir(box, owner="Me@Corp.com")] == [["me@corp.com"]]
    (tmp_path / "broken" / "cur").mkdir(parents=True)
    with pytest.raises(IngestError, match="damaged Maildir.*--owner"):
        read_maildir(tmp_path / "broken")
