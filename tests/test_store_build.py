"""Store schema, FTS sync triggers, atomic build, duplicates, build options, opening errors."""
from __future__ import annotations

import sqlite3

import pytest

from inboxrl.email.build_report import BuildOptions
from inboxrl.email.store import EmailStore, StoreError, build_store, check_scenarios
from inboxrl.email.types import Email, Scenario


def _mail(mid, body="hello world", sender="a@x.com", to=("b@x.com",), date="2001-01-02 03:04:05",
          subject="subj", cc=(), bcc=()):
    return Email(message_id=mid, date=date, subject=subject, from_address=sender, to=list(to),
                 cc=list(cc), bcc=list(bcc), body=body)


def _fts_ids(conn, word):
    return sorted(r[0] for r in conn.execute("SELECT rowid FROM emails_fts WHERE emails_fts MATCH ?", (f'"{word}"',)))


def test_schema_tables_indexes_and_triggers(tmp_path):
    db = tmp_path / "s.db"
    build_store(db, [(_mail("<1>"), [])], progress=False)
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"emails", "emails_fts", "recipients", "inbox_members", "store_meta"} <= names
    assert {"idx_emails_from", "idx_emails_date", "idx_recipients_address", "idx_emails_message_id",
            "idx_inbox_members_email"} <= names
    assert {"emails_fts_ai", "emails_fts_ad", "emails_fts_au"} <= names
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'emails_fts'").fetchone()[0]
    assert "content='emails'" in sql and "fts5" in sql.lower()


def test_triggers_keep_fts_in_sync(tmp_path):
    db = tmp_path / "s.db"
    build_store(db, [(_mail("<1>", body="apple banana"), []), (_mail("<2>", body="banana cherry"), [])],
                progress=False)
    conn = sqlite3.connect(db)
    assert _fts_ids(conn, "banana") == [1, 2]
    conn.execute("INSERT INTO emails(id, message_id, date, subject, from_address, body) "
                 "VALUES (3, '<3>', '2001-01-03 00:00:00', 's', 'a@x.com', 'durian apple')")
    assert _fts_ids(conn, "durian") == [3] and _fts_ids(conn, "apple") == [1, 3]
    conn.execute("UPDATE emails SET body = 'elderberry' WHERE id = 1")
    assert _fts_ids(conn, "apple") == [3] and _fts_ids(conn, "elderberry") == [1]
    conn.execute("INSERT INTO inbox_members VALUES ('b@x.com', 3, 0)")
    conn.execute("INSERT INTO inbox_members VALUES ('New@X.com', 3, 0)")
    conn.execute("INSERT INTO inbox_members VALUES ('new@x.com', 1, 0)")
    conn.execute("DELETE FROM inbox_members WHERE inbox = 'new@x.com' AND email_id = 1")
    conn.execute("DELETE FROM emails WHERE id = 2")
    assert _fts_ids(conn, "banana") == [] and _fts_ids(conn, "cherry") == []
    assert conn.execute("SELECT COUNT(*) FROM inbox_members WHERE email_id = 2").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM recipients WHERE email_id = 2").fetchone()[0] == 0
    conn.commit()
    conn.execute("INSERT INTO emails_fts(emails_fts) VALUES ('integrity-check')")
    conn.close()
    with EmailStore(db) as store:
        assert [h.message_id for h in store.search("b@x.com", ["elderberry"])] == ["<1>"]
        assert [h.message_id for h in store.search("b@x.com", ["apple"])] == ["<3>"]
        assert [h.message_id for h in store.search("new@x.com", ["apple"])] == ["<3>"]
        assert store.search("new@x.com", ["elderberry"]) == []
        assert store.search("a@x.com", ["cherry"]) == []


def test_duplicates_are_merged_counted_and_owners_added(tmp_path):
    db = tmp_path / "s.db"
    recs = [(_mail("<1>", body="same"), ["o1@x.com"]),
            (_mail("<1>", body="same"), ["o2@x.com"]),                # the same message again
            (_mail("<1>", body="other body"), ["o4@x.com"]),          # same id, other content: its own
            (_mail("<9>", body="same"), ["o3@x.com"]),                # same sender+date+subject+body
            (_mail("<10>", body="same", date="2001-01-02 03:04:06"), [])]  # differs by date: kept
    rep = build_store(db, recs, progress=False)
    assert (rep.read, rep.stored, rep.same_message, rep.duplicate_content, rep.id_reused) == (5, 3, 1, 1, 1)
    # a@x.com (sender) and b@x.com (recipient) are in both messages called <1>
    assert rep.ids_shared_in_inbox == 2 and rep.shared_id_examples == ["<1> x2 in a@x.com", "<1> x2 in b@x.com"]
    with EmailStore(db) as store:
        assert store.count() == 3 and store.in_inbox("o3@x.com", "<9>")
        assert store.read("o3@x.com", "<9>").message_id == "<1>"          # alias of the kept copy
        assert store.read("o3@x.com", "9").message_id == "<1>"
        assert store.read("nobody@x.com", "<9>") is None
        for owner in ("o1@x.com", "o2@x.com", "o3@x.com"):
            assert store.read(owner, "<1>").body == "same"
        assert store.read("o4@x.com", "<1>").body == "other body"
        assert store.read("o1@x.com", "<10>") is None


def test_options_truncate_mass_mail_short_and_defaults(tmp_path):
    db = tmp_path / "s.db"
    many = [f"r{i}@x.com" for i in range(31)]
    recs = [(_mail("<long>", body="w " * 50), []), (_mail("<mass>", to=many), []),
            (_mail("<ok30>", to=many[:30], body="thirty recipients"), []),
            (_mail("<short>", body=" hi "), []),
            (_mail("", body="no id here"), []), (_mail("<nodate>", date="", body="undated mail"), []),
            (_mail("<rfc>", date="Mon, 14 May 2001 16:39:00 -0700", body="rfc dated"), [])]
    rep = build_store(db, recs, BuildOptions(max_body_chars=20, max_recipients=30, min_body_chars=3),
                      progress=False)
    assert (rep.read, rep.stored, rep.truncated, rep.mass_mail_skipped, rep.too_short_skipped) == (7, 5, 1, 1, 1)
    assert rep.missing_id_generated == 1 and rep.missing_date_defaulted == 1
    summary = rep.summary()
    assert "5 of 7 emails stored" in summary and "1 body shorter than min_body_chars" in summary
    assert "1 mass mails (more than 30 recipients; raise --max-recipients to keep them)" in summary
    with EmailStore(db) as store:
        long = store.read("a@x.com", "<long>")
        assert long.body == "w " * 10 and long.body_truncated
        assert not store.read("a@x.com", "<rfc>").body_truncated
        assert store.read("a@x.com", "<nodate>").date == "1970-01-01 00:00:00"
        assert store.read("a@x.com", "<rfc>").date == "2001-05-14 23:39:00"
        assert len(store.read("a@x.com", "<ok30>").to) == 30
        assert [h.subject for h in store.search("a@x.com", ["no id here"])] == ["subj"]


def test_failed_build_leaves_no_partial_db_and_keeps_old(tmp_path):
    db = tmp_path / "s.db"
    build_store(db, [(_mail("<old>"), [])], progress=False)

    def broken():
        yield _mail("<new>"), []
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        build_store(db, broken(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]
    with EmailStore(db) as store:
        assert store.in_inbox("a@x.com", "<old>") and not store.in_inbox("a@x.com", "<new>")
    fresh = tmp_path / "fresh.db"
    with pytest.raises(RuntimeError):
        build_store(fresh, broken(), progress=False)
    assert not fresh.exists()


def test_open_errors_are_one_readable_line(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        EmailStore(tmp_path / "missing.db")
    text = tmp_path / "notes.db"
    text.write_text("not a database at all " * 100)
    with pytest.raises(StoreError, match="not an inboxrl email store"):
        EmailStore(text)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(StoreError, match="not an inboxrl email store"):
        EmailStore(other)
    with pytest.raises(StoreError):
        EmailStore(tmp_path)


def test_store_is_read_only(tmp_path):
    db = tmp_path / "s.db"
    build_store(db, [(_mail("<1>"), [])], progress=False)
    with EmailStore(db) as store:
        with pytest.raises(sqlite3.OperationalError):
            store._conn.execute("DELETE FROM emails")


def test_check_scenarios_reports_missing_or_foreign_references(tmp_path):
    db = tmp_path / "s.db"
    build_store(db, [(_mail("<1>", to=["b@x.com"]), []), (_mail("<2>", sender="c@x.com", to=["d@x.com"]), [])],
                progress=False)

    def sc(i, mids, inbox):
        return Scenario(id=i, question="q", answer="a", message_ids=mids, inbox_address=inbox,
                        query_date="2001-02-01")

    scenarios = [sc("ok", ["<1>"], "b@x.com"), sc("missing", ["<7>"], "b@x.com"),
                 sc("foreign", ["<2>"], "b@x.com"), sc("partly", ["<1>", "<8>"], "a@x.com"),
                 sc("ok2", ["<1>"], "A@X.com"), sc("ok3", ["<2>"], "d@x.com")]
    assert check_scenarios(db, scenarios) == ["missing", "foreign", "partly"]


def test_duplicate_owner_already_member_keeps_one_inbox_token(tmp_path):
    db = tmp_path / "s.db"
    recs = [(_mail("<1>", body="pear"), []), (_mail("<1>", body="pear"), ["b@x.com", "new@x.com"]),
            (_mail("<1>", body="pear"), ["new@x.com"])]
    build_store(db, recs, progress=False)
    conn = sqlite3.connect(db)
    tokens = conn.execute("SELECT inboxes FROM emails").fetchone()[0].split()
    assert len(tokens) == len(set(tokens)) == 3                    # a, b, new
    assert conn.execute("SELECT COUNT(*) FROM inbox_members").fetchone()[0] == 3
    with EmailStore(db) as store:
        assert [h.message_id for h in store.search("new@x.com", ["pear"])] == ["<1>"]
        assert store.inboxes() == ["a@x.com", "b@x.com", "new@x.com"]


def test_concurrent_searches_share_one_store(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    db = tmp_path / "s.db"
    build_store(db, [(_mail(f"<{i}>", body=f"word{i % 5} common n{i}"), []) for i in range(50)], progress=False)
    with EmailStore(db) as store, ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda i: len(store.search("b@x.com", [f"word{i % 5}"], max_results=100)),
                               range(40)))
    assert counts == [10] * 40


def test_ids_follow_dates_and_both_plans_give_the_same_newest_first_order(tmp_path):
    """``order_by_date`` numbers rows by (date, arrival), so FTS5's rowid order is the
    newest-first order; a store without that guarantee sorts by date: all give the same results."""
    import random

    rng = random.Random(3)
    queries = [["common"], ["word1"], ["common", "word2"]]
    dates = [f"2001-0{rng.randint(1, 3)}-0{rng.randint(1, 4)} 00:00:00" for _ in range(60)]  # many ties
    recs = [(_mail(f"<{i}>", body=f"common word{i % 3} n{i}", date=d), []) for i, d in enumerate(dates)]
    build_store(tmp_path / "plain.db", recs, progress=False)
    with EmailStore(tmp_path / "plain.db") as store:
        assert store.meta()["ids_by_date"] == "0" and store._newest_first == "e.date DESC, e.id DESC"
        default = [[h.message_id for h in store.search("b@x.com", q, max_results=10)] for q in queries]
    db = tmp_path / "s.db"
    build_store(db, recs, BuildOptions(order_by_date=True), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.db", "s.db"]  # no stage file left
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, date, message_id FROM emails ORDER BY id").fetchall()
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    arrival = {f"<{i}>": i for i in range(len(recs))}
    assert [arrival[r[2]] for r in rows] == sorted(range(len(recs)), key=lambda i: (dates[i], i))
    with EmailStore(db) as store:
        assert store._newest_first == "f.rowid DESC"
        fast = [[h.message_id for h in store.search("b@x.com", q, max_results=10)] for q in queries]
    conn.execute("UPDATE store_meta SET value = '0' WHERE key = 'ids_by_date'")
    conn.commit()
    conn.close()
    with EmailStore(db) as store:
        assert store._newest_first == "e.date DESC, e.id DESC"
        sorted_plan = [[h.message_id for h in store.search("b@x.com", q, max_results=10)] for q in queries]
    assert fast == sorted_plan == default
    want = sorted(range(len(recs)), key=lambda i: (dates[i], i), reverse=True)
    assert fast[0] == [f"<{i}>" for i in want[:10]]
