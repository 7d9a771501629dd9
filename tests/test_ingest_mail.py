"""Maildir and mbox readers on messy fixture mail the tests write themselves."""
from __future__ import annotations

import mailbox

import pytest

from inboxrl.email.build_report import DEFAULT_DATE
from inboxrl.email.ingest import IngestError, build_db, derive_maildir_owner, detect_kind, read_maildir, read_mbox
from inboxrl.email.mail_text import html_to_text
from inboxrl.email.store import EmailStore

PLAIN = b"""Message-ID: <1.plain@enron>
Date: Mon, 14 May 2001 16:39:00 -0700 (PDT)
From: phillip.allen@enron.com
To: tim.belden@enron.com, "Smith, John" <john.smith@enron.com>
Cc: jane@enron.com
Subject: Forecast

Here is our forecast.
"""

LATIN1 = ("Message-ID: <2.latin@enron>\nDate: Tue, 15 May 2001 08:00:00 +0000\n"
          "From: tim.belden@enron.com\nTo: phillip.allen@enron.com\nSubject: Caf\xe9\n"
          "Content-Type: text/plain; charset=iso-8859-1\n\nLe caf\xe9 est pr\xeat.\n").encode("latin-1")

UNDECLARED = ("Message-ID: <3.undeclared@enron>\nDate: not a date at all\nFrom: x@enron.com\n"
              "To: phillip.allen@enron.com\nSubject: bytes\n\nNa\xefve bytes \xff here\n").encode("latin-1")

MULTIPART = b"""Message-ID: <4.multi@enron>
Date: Wed, 16 May 2001 10:00:00 +0200
From: "Tim" <tim.belden@enron.com>
To: phillip.allen@enron.com
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="BB"

--BB
Content-Type: text/html; charset=utf-8

<html><body><p>HTML version</p></body></html>
--BB
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

UGxhaW4gdmVyc2lvbiDinJM=
--BB--
"""

HTML_ONLY = b"""Message-ID: <5.html@enron>
Date: Thu, 17 May 2001 10:00:00 +0000
From: news@list.com
To: list@list.com
Subject: News
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style><script>alert(1)</script></head>
<body><p>First &amp; foremost</p><div>Second line</div></body></html>
"""

NO_HEADERS_AT_ALL = b"\x00\x01\x02 binary junk \xff\xfe without any header lines"

MISSING = b"""Subject: nothing else

Only a subject and a body.
"""


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def maildir(tmp_path):
    root = tmp_path / "maildir"
    _write(root / "allen-p" / "inbox" / "1.", LATIN1)
    _write(root / "allen-p" / "inbox" / "2.", UNDECLARED)
    _write(root / "allen-p" / "inbox" / "3.", MULTIPART)
    _write(root / "allen-p" / "inbox" / "4.", HTML_ONLY)
    _write(root / "allen-p" / "sent" / "1.", PLAIN)
    _write(root / "allen-p" / "sent" / "junk.", NO_HEADERS_AT_ALL)
    _write(root / "allen-p" / "notes" / "deep" / "1.", MISSING)
    _write(root / "allen-p" / ".hidden", PLAIN)
    _write(root / "zz-noinbox" / "sent" / "1.", PLAIN.replace(b"<1.plain", b"<9.copy"))
    return root


def test_maildir_messy_messages(maildir):
    stream = read_maildir(maildir)
    records = {e.message_id: (e, owners) for e, owners in stream}
    rep = stream.report
    assert rep.seen == 8 and rep.yielded == 7 and rep.broken_skipped == 1
    assert "allen-p/sent/junk." in rep.errors[0]
    assert rep.owners == {"allen-p": "phillip.allen@enron.com", "zz-noinbox": "zz-noinbox@enron.com"}
    plain, owners = records["<1.plain@enron>"]
    assert owners == ["phillip.allen@enron.com"]
    assert plain.date == "2001-05-14 23:39:00" and plain.subject == "Forecast"
    assert plain.to == ["tim.belden@enron.com", "john.smith@enron.com"] and plain.cc == ["jane@enron.com"]
    assert plain.body.strip() == "Here is our forecast." and plain.file_name == "allen-p/sent/1."
    assert records["<2.latin@enron>"][0].body.strip() == "Le café est prêt." and records["<2.latin@enron>"][0].subject == "Café"
    undeclared = records["<3.undeclared@enron>"][0]
    assert undeclared.date == DEFAULT_DATE and undeclared.body.strip() == "Naïve bytes ÿ here"
    multi = records["<4.multi@enron>"][0]
    assert multi.body.strip() == "Plain version ✓" and multi.subject == "Grüße"
    assert multi.from_address == "tim.belden@enron.com" and multi.date == "2001-05-16 08:00:00"
    html = records["<5.html@enron>"][0]
    assert html.body == "First & foremost\n\nSecond line"
    missing = [e for e, _ in records.values() if e.subject == "nothing else"][0]
    assert missing.message_id == "" and missing.from_address == "" and missing.date == DEFAULT_DATE
    assert records["<9.copy@enron>"][1] == ["zz-noinbox@enron.com"]
    assert (rep.bad_date, rep.missing_date, rep.missing_message_id, rep.missing_from) == (1, 1, 1, 1)
    assert rep.charset_fallback == 1 and rep.html_converted == 1
    assert "7 of 8 messages usable" in rep.summary()


def test_maildir_owner_argument_and_single_user_root(maildir):
    stream = read_maildir(maildir / "allen-p", owner="me@enron.com")
    assert {tuple(o) for _, o in stream} == {("me@enron.com",)}
    owners = {tuple(o) for _, o in read_maildir(maildir / "allen-p")}
    assert owners == {("phillip.allen@enron.com",)}
    assert derive_maildir_owner(maildir / "zz-noinbox") == "zz-noinbox@enron.com"


def test_build_db_from_maildir(maildir, tmp_path):
    build, ingest = build_db(maildir, "auto", tmp_path / "m.db", progress=False)
    # zz-noinbox/sent/1. is the same mail as allen-p/sent/1. under another Message-ID: stored once
    assert ingest.kind == "maildir" and build.read == 7 and build.stored == 6 and build.duplicate_content == 1
    with EmailStore(tmp_path / "m.db") as store:
        # the newsletter to a list belongs to the mailbox it was delivered to
        assert [h.message_id for h in store.search("phillip.allen@enron.com", ["foremost"])] == ["<5.html@enron>"]
        assert store.read("zz-noinbox@enron.com", "<1.plain@enron>") is not None
        assert store.read("zz-noinbox@enron.com", "<4.multi@enron>") is None


def test_mbox_with_and_without_owner(tmp_path):
    path = tmp_path / "box.mbox"
    box = mailbox.mbox(path)
    for raw in (PLAIN, LATIN1, MULTIPART, MISSING):
        box.add(raw)
    box.flush()
    box.close()
    assert detect_kind(path) == "mbox"
    stream = read_mbox(path)
    records = list(stream)
    assert len(records) == 4 and stream.report.seen == 4
    assert {o[0] for _, o in records} == {"phillip.allen@enron.com"}   # most frequent To
    assert records[1][0].body.strip() == "Le café est prêt."
    stream = read_mbox(path, owner="Boss@Enron.com")
    assert {o[0] for _, o in stream} == {"boss@enron.com"}
    build, ingest = build_db(path, "mbox", tmp_path / "b.db", owner="boss@enron.com", progress=False)
    assert build.stored == 4 and ingest.yielded == 4
    with EmailStore(tmp_path / "b.db") as store:
        assert [h.message_id for h in store.search("boss@enron.com", ["forecast"])] == ["<1.plain@enron>"]


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        detect_kind(tmp_path / "nope")
    odd = tmp_path / "odd.txt"
    odd.write_text("hello")
    with pytest.raises(IngestError, match="cannot tell"):
        detect_kind(odd)
    with pytest.raises(IngestError, match="not a directory"):
        read_maildir(odd)
    with pytest.raises(IngestError, match="unknown source kind"):
        build_db(odd, "pst", tmp_path / "x.db")
    assert not (tmp_path / "x.db").exists()


def test_html_to_text():
    assert html_to_text("<p>a&nbsp;b</p><p></p><p></p><br><b>c</b>") == "a b\n\nc"
    assert html_to_text("<div>unclosed <span>tags") == "unclosed tags"


def test_normalize_date_forms():
    from datetime import date, datetime, timedelta, timezone

    from inboxrl.email.build_report import normalize_date

    assert normalize_date("2001-05-14 16:39:00") == "2001-05-14 16:39:00"
    assert normalize_date("2001-05-14T16:39:00Z") == "2001-05-14 16:39:00"
    assert normalize_date("2001-05-14T16:39:00-07:00") == "2001-05-14 23:39:00"
    assert normalize_date("2001-05-14") == "2001-05-14 00:00:00"
    assert normalize_date("Mon, 14 May 2001 16:39:00 -0700 (PDT)") == "2001-05-14 23:39:00"
    assert normalize_date(datetime(2001, 5, 14, 16, 39, tzinfo=timezone(timedelta(hours=-7)))) == "2001-05-14 23:39:00"
    assert normalize_date(date(2001, 5, 14)) == "2001-05-14 00:00:00"
    for bad in ("", "   ", "yesterday", "2001-13-45", "Mon, 99 Foo 2001", None):
        assert normalize_date(bad) is None
