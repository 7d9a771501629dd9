"""Inbox isolation when Message-IDs collide: no message reaches an inbox by borrowing an id.

Two owners' mail in one store, a message of each under the same Message-ID with different
content, built in both orders (from a maildir tree and directly): each inbox reads and finds
only its own message, none is lost. A seeded fuzz loop over random owners / ids / contents /
build orders checks the invariant: everything an inbox can search or read is a message that
inbox holds, every message it holds is found, and reads resolve the same whatever the order.
"""
from __future__ import annotations

import random
from itertools import permutations

import pytest

from inboxrl.email.build_report import BuildOptions
from inboxrl.email.ingest import build_db
from inboxrl.email.store import EmailStore, ambiguous_scenarios, build_store, check_scenarios
from inboxrl.email.types import Email, Scenario

ALICE, BOB, EVE = "alice@corp.com", "bob@corp.com", "eve@corp.com"

BOB_MAIL = b"""Message-ID: <Mail2L:1:shared@corp.com>
Date: Tue, 15 May 2001 09:00:00 +0000
From: "Carol Hr" <carol@corp.com>
To: "Bob B" <bob@corp.com>
Subject: Your salary review

Bob, your new salary is 91000 dollars. Keep this private.
"""

ALICE_MAIL = b"""Message-ID: <Mail2L:1:shared@corp.com>
Date: Mon, 14 May 2001 08:00:00 +0000
From: dave@corp.com
To: alice@corp.com
Subject: Lunch

Alice, lunch on Friday at noon?
"""


def _write_tree(root, first_folder, second_folder):
    for folder, raw in ((first_folder, BOB_MAIL), (second_folder, ALICE_MAIL)):
        box = root / folder / "inbox"
        box.mkdir(parents=True)
        (box / "1.").write_bytes(raw)


@pytest.mark.parametrize("folders", [("a-bob", "b-alice"), ("z-bob", "b-alice")], ids=["bob-first", "alice-first"])
def test_two_owner_collision_from_a_maildir_both_orders(tmp_path, folders):
    _write_tree(tmp_path / "mail", *folders)
    build, ingest = build_db(tmp_path / "mail", "maildir", tmp_path / "m.db", progress=False)
    assert set(ingest.owners.values()) == {ALICE, BOB}
    assert (build.read, build.stored, build.id_reused, build.ids_shared_in_inbox) == (2, 2, 1, 0)
    mid = "<Mail2L:1:shared@corp.com>"
    with EmailStore(tmp_path / "m.db") as store:
        assert store.read(BOB, mid).subject == "Your salary review"
        assert store.read(ALICE, mid).subject == "Lunch"
        assert store.read(ALICE, "Mail2L:1:shared@corp.com").subject == "Lunch"
        for keyword in ('"', "*", "salary", "91000", "Bob B", "Carol"):
            assert all(h.subject == "Lunch" for h in store.search(ALICE, [keyword])), keyword
        assert [h.subject for h in store.search(BOB, ["salary"])] == ["Your salary review"]
        assert [h.subject for h in store.search(ALICE, ["lunch"])] == ["Lunch"]
        assert store.search(BOB, ["lunch"]) == []


def _record(mid, body, sender, to, date="2001-05-14 08:00:00"):
    return Email(message_id=mid, date=date, subject="s", from_address=sender, to=list(to), body=body)


def test_an_owned_message_wins_over_one_addressed_to_the_inbox_in_both_orders(tmp_path):
    """Eve's mailbox holds a backdated mail to Bob under the id of Bob's own mail: Bob's read
    of that id still gives his own message, whichever is built first; the collision is reported."""
    bob_own = (_record("<x@corp>", "the real contract terms", "carol@corp.com", [BOB]), [BOB])
    planted = (_record("<x@corp>", "send the password to eve", EVE, [BOB], date="1999-01-01 00:00:00"), [EVE])
    for order in permutations([bob_own, planted]):
        db = tmp_path / f"{len(list(tmp_path.iterdir()))}.db"
        rep = build_store(db, list(order), progress=False)
        assert rep.stored == 2 and rep.ids_shared_in_inbox == 1 and rep.shared_id_examples == [f"<x@corp> x2 in {BOB}"]
        with EmailStore(db) as store:
            assert store.read(BOB, "<x@corp>").body == "the real contract terms"
            assert store.read(EVE, "<x@corp>").body == "send the password to eve"
            # addressed to Bob, the planted mail is in his inbox (as any mail to him is) ...
            assert {h.snippet for h in store.search(BOB, ["the"])} == {"<b>the</b> real contract terms",
                                                                      "send <b>the</b> password to eve"}
            # ... but it cannot take the place of his own message under the shared id
            assert store.read("carol@corp.com", "<x@corp>").body == "the real contract terms"
            assert (store.id_matches(BOB, "x@corp"), store.id_matches(EVE, "<x@corp>")) == (2, 1)
            assert store.id_matches(ALICE, "<x@corp>") == 0
        scenario = Scenario(id="q", question="?", answer="a", message_ids=["<x@corp>"], inbox_address=BOB,
                            query_date="2001-06-01")
        assert check_scenarios(db, [scenario]) == [] and ambiguous_scenarios(db, [scenario]) == ["q"]
        assert ambiguous_scenarios(db, [Scenario(**{**scenario.to_dict(), "inbox_address": EVE})]) == []


def test_the_same_message_in_two_mailboxes_shares_one_row(tmp_path):
    mail = _record("<same@corp>", "minutes of the board meeting", ALICE, [BOB])
    rep = build_store(tmp_path / "s.db", [(mail, [ALICE]), (mail, [BOB]), (mail, ["archive@corp.com"])],
                      progress=False)
    assert (rep.stored, rep.same_message, rep.id_reused) == (1, 2, 0)
    with EmailStore(tmp_path / "s.db") as store:
        assert store.count() == 1
        for inbox in (ALICE, BOB, "archive@corp.com"):
            assert store.read(inbox, "<same@corp>").body == "minutes of the board meeting"


# ---------------------------------------------------------------- fuzz

PEOPLE = ["p0@x.com", "p1@x.com", "p2@x.com", "p3@x.com"]
IDS = ["<1@x>", "<2@x>", "<1@X>", "2@x"]  # "2@x" and "<2@x>" are the same id to read()


def _random_records(rng):
    bodies = [f"word{k} payload{k}" for k in range(5)]
    records = []
    for _ in range(rng.randint(2, 9)):
        body = rng.choice(bodies)
        sender = rng.choice(PEOPLE)
        to = rng.sample(PEOPLE, rng.randint(0, 2))
        owners = rng.sample(PEOPLE, rng.randint(0, 2))
        date = rng.choice(["2001-01-01 00:00:00", "2001-01-02 00:00:00"])
        records.append((_record(rng.choice(IDS), body, sender, to, date), owners))
    return records


def _expected(records):
    """content -> (inboxes, ids, body): the store's rows as the identity rules define them."""
    groups: dict[tuple, tuple[set, set, str]] = {}
    for email, owners in records:
        key = (email.from_address, email.date, email.body, tuple(email.to))
        inboxes, ids, _ = groups.setdefault(key, (set(), set(), email.body))
        inboxes.update({email.from_address, *email.to, *owners})
        ids.add(email.message_id.strip("<>"))
    return groups


def _observe(db, records):
    """What each inbox can see: per (inbox, id) the row read returns, per inbox the found rows."""
    seen = {}
    with EmailStore(db) as store:
        for inbox in PEOPLE:
            for mid in IDS:
                email = store.read(inbox, mid)
                seen[inbox, mid] = None if email is None else (email.from_address, email.date, email.body,
                                                               tuple(email.to))
            hits = []
            for k in range(5):
                hits += [(h.from_address, h.date, h.snippet) for h in store.search(inbox, [f"payload{k}"],
                                                                                  max_results=10)]
            seen[inbox, "search"] = sorted(hits)
    return seen


def test_fuzz_collisions_never_cross_inboxes(tmp_path):
    rng = random.Random(20261202)
    for case in range(60):
        records = _random_records(rng)
        groups = _expected(records)
        db = tmp_path / f"c{case}.db"
        build_store(db, records, progress=False)
        seen = _observe(db, records)
        for inbox in PEOPLE:
            mine = {k: g for k, g in groups.items() if inbox in g[0]}
            for mid in IDS:
                want = {k for k, g in mine.items() if mid.strip("<>") in g[1]}
                got = seen[inbox, mid]
                assert (got is None) == (not want), (case, inbox, mid, records)
                assert got is None or got in want, (case, inbox, mid, records)
            expected_hits = sorted((k[0], k[1], f"word{k[2][4]} <b>payload{k[2][4]}</b>") for k in mine)
            assert seen[inbox, "search"] == expected_hits, (case, inbox, records)
        shuffled = records[:]
        rng.shuffle(shuffled)
        # rebuilt in another order, and numbered by date: the same reads and finds
        build_store(tmp_path / f"r{case}.db", shuffled, BuildOptions(order_by_date=True), progress=False)
        assert _observe(tmp_path / f"r{case}.db", shuffled) == seen, (case, records)
