"""The Enron parquet reader: array and string recipients, timestamps, batches, bad rows, owners."""
from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inboxrl.email.build_report import DEFAULT_DATE, BuildOptions
from inboxrl.email.ingest import IngestError, build_db, detect_kind, read_parquet
from inboxrl.email.store import EmailStore


def _write_arrays(path):
    table = pa.table({
        "message_id": ["<1@e>", "<2@e>", "", "<4@e>", "<1@e>"],
        "subject": ["Gas deal", None, "No id", "Mass mail", "Gas deal again"],
        "from": ["Phillip.Allen@enron.com", "tim@enron.com", "x@enron.com", "hr@enron.com", "a@b.com"],
        "to": [["tim@enron.com"], ["phillip.allen@enron.com", None], [], [f"u{i}@enron.com" for i in range(40)], []],
        "cc": [["Jane@Enron.com"], None, None, None, None],
        "bcc": [[], [], None, None, None],
        "date": pa.array([datetime(2001, 5, 14, 23, 39, tzinfo=timezone.utc), datetime(2001, 5, 15, 8, 0),
                          None, datetime(2001, 6, 1), datetime(2001, 5, 16)], type=pa.timestamp("us", tz="UTC")),
        "body": ["The gas deal is done.", "Thanks!", "who sent this", "all hands", "later copy"],
        "file_name": ["allen-p/inbox/1.", "allen-p/sent/2.", None, "allen-p/inbox/4.", "x/1."],
    })
    pq.write_table(table, path)


def _write_strings(path):
    table = pa.table({
        "message_id": ["<10@e>", "<11@e>"],
        "subject": ["Power", "Meeting"],
        "from": ["dave@enron.com", "Eve <eve@enron.com>"],
        "to": ["carol@enron.com, \"Smith, Bob\" <bob@enron.com>", ""],
        "cc": [None, "frank@enron.com"],
        "bcc": ["", None],
        "date": ["2001-07-01 10:00:00", "Mon, 2 Jul 2001 09:00:00 -0500"],
        "body": ["Power prices spiked.", "Meeting at noon."],
        "file_name": ["d/1.", "e/1."],
    })
    pq.write_table(table, path)


def test_parquet_arrays_and_defaults(tmp_path):
    path = tmp_path / "emails.parquet"
    _write_arrays(path)
    stream = read_parquet(path, batch_size=2)
    records = [e for e, owners in stream]
    assert all(owners == [] for _, owners in read_parquet(path))
    rep = stream.report
    assert rep.seen == 5 and rep.yielded == 5 and rep.missing_message_id == 1 and rep.missing_date == 1
    assert rep.missing_subject == 1
    first = records[0]
    assert first.from_address == "phillip.allen@enron.com" and first.to == ["tim@enron.com"]
    assert first.cc == ["jane@enron.com"] and first.date == "2001-05-14 23:39:00"
    assert first.file_name == "allen-p/inbox/1."
    assert records[1].to == ["phillip.allen@enron.com"] and records[1].subject == ""
    assert records[2].date == DEFAULT_DATE and records[2].message_id == ""  # the builder generates one


def test_parquet_string_recipients(tmp_path):
    path = tmp_path / "s.parquet"
    _write_strings(path)
    a, b = [e for e, _ in read_parquet(path)]
    assert a.to == ["carol@enron.com", "bob@enron.com"] and a.bcc == [] and a.cc == []
    assert b.from_address == "eve@enron.com" and b.to == [] and b.cc == ["frank@enron.com"]
    assert b.date == "2001-07-02 14:00:00"


def test_parquet_directory_build_and_membership(tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    _write_arrays(src / "part-0.parquet")
    _write_strings(src / "part-1.parquet")
    assert detect_kind(src) == "parquet" and detect_kind(src / "part-0.parquet") == "parquet"
    build, ingest = build_db(src, "auto", tmp_path / "p.db", options=BuildOptions(max_recipients=30),
                             progress=False)
    assert ingest.seen == 7 and build.read == 7
    assert (build.stored, build.id_reused, build.mass_mail_skipped, build.missing_id_generated) == (6, 1, 1, 1)
    with EmailStore(tmp_path / "p.db") as store:
        assert [h.message_id for h in store.search("jane@enron.com", ["gas"])] == ["<1@e>"]
        assert [h.message_id for h in store.search("phillip.allen@enron.com", ["thanks"])] == ["<2@e>"]
        # two different messages called <1@e>: each inbox reads its own, never the other's
        assert store.read("a@b.com", "<1@e>").body == "later copy"
        assert store.read("jane@enron.com", "<1@e>").body == "The gas deal is done."
        assert store.read("bob@enron.com", "<10@e>").to == ["carol@enron.com", "bob@enron.com"]
        assert store.read("bob@enron.com", "<10@e>").names == {"bob@enron.com": "Smith, Bob"}
        assert not store.in_inbox("hr@enron.com", "<4@e>")


def test_parquet_owner_argument(tmp_path):
    path = tmp_path / "s.parquet"
    _write_strings(path)
    assert {tuple(o) for _, o in read_parquet(path, owner="Boss@enron.com")} == {("boss@enron.com",)}


def test_parquet_wrong_layout_and_missing(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"text": ["a"]}), path)
    with pytest.raises(IngestError, match="not the Enron parquet layout"):
        list(read_parquet(path))
    with pytest.raises(IngestError, match="does not exist"):
        read_parquet(tmp_path / "none.parquet")
    broken = tmp_path / "dir"
    broken.mkdir()
    (broken / "bad.parquet").write_bytes(b"PAR1 garbage")
    _write_strings(broken / "good.parquet")
    stream = read_parquet(broken)
    assert len(list(stream)) == 2 and stream.report.broken_skipped == 1
