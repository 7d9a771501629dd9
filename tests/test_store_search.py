"""Search semantics of the email store: AND, phrases, filters, date bounds, order, inbox scope."""
from __future__ import annotations

import pytest

from inboxrl.email.store import EmailStore, build_store, fts_query
from inboxrl.email.types import Email

ALICE, BOB, CAROL, DAVE = "alice@enron.com", "bob@enron.com", "carol@enron.com", "dave@enron.com"


def _mail(mid, date, subject, sender, to, body, cc=(), bcc=()):
    return Email(message_id=mid, date=date, subject=subject, from_address=sender,
                 to=list(to), cc=list(cc), bcc=list(bcc), body=body)


RECORDS = [
    (_mail("<1@t>", "2001-05-01 09:00:00", "Gas contract", ALICE, [BOB], "The gas contract for Houston is signed."), []),
    (_mail("<2@t>", "2001-05-03 12:30:00", "Re: Gas contract", BOB, [ALICE], "Great news about the contract. Lunch?"), []),
    (_mail("<3@t>", "2001-05-03 23:59:59", "Houston trip", CAROL, [ALICE], "Flying to Houston on Friday.", cc=[DAVE]), []),
    (_mail("<4@t>", "2001-05-04 00:00:00", "Power prices", DAVE, [CAROL], "Power prices in California spiked.", bcc=[ALICE]), []),
    (_mail("<5@t>", "2001-06-01 08:00:00", "Weekly report", CAROL, [DAVE], "Contract review and gas storage report."), []),
    (_mail("<6@t>", "2001-06-02 08:00:00", "Newsletter", "news@list.com", ["all@list.com"], "Gas contract news digest."), [ALICE]),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    db = tmp_path_factory.mktemp("search") / "mail.db"
    build_store(db, RECORDS, progress=False)
    with EmailStore(db) as s:
        yield s


def ids(hits):
    return [h.message_id for h in hits]


def test_keywords_are_anded_and_scoped_newest_first(store):
    assert ids(store.search(ALICE, ["contract"])) == ["<6@t>", "<2@t>", "<1@t>"]
    assert ids(store.search(ALICE, ["gas", "contract"])) == ["<6@t>", "<2@t>", "<1@t>"]
    assert ids(store.search(ALICE, ["contract", "lunch"])) == ["<2@t>"]
    # carol holds <3>, <4>, <5>: only <5> mentions a contract
    assert ids(store.search(CAROL, ["contract"])) == ["<5@t>"]
    assert store.search("nobody@enron.com", ["contract"]) == []


def test_inbox_membership_covers_sender_to_cc_bcc_and_owner(store):
    assert ids(store.search(DAVE, ["houston"])) == ["<3@t>"]           # cc
    assert ids(store.search(ALICE, ["california"])) == ["<4@t>"]       # bcc
    assert ids(store.search(ALICE, ["digest"])) == ["<6@t>"]           # ingested for owner alice
    assert store.search(BOB, ["digest"]) == []


def test_multiword_keyword_is_a_phrase(store):
    assert ids(store.search(ALICE, ["gas contract"])) == ["<6@t>", "<2@t>", "<1@t>"]
    assert ids(store.search(ALICE, ["the gas contract"])) == ["<1@t>"]
    assert ids(store.search(ALICE, ["the", "gas", "contract"])) == ["<2@t>", "<1@t>"]
    assert store.search(ALICE, ["contract gas"]) == []


def test_stemming_case_and_accents(store):
    assert ids(store.search(ALICE, ["CONTRACTS"])) == ["<6@t>", "<2@t>", "<1@t>"]
    assert ids(store.search(ALICE, ["flying"])) == ["<3@t>"]
    assert ids(store.search(ALICE, ["Hóuston"])) == ["<3@t>", "<1@t>"]


def test_from_and_to_filters(store):
    assert ids(store.search(ALICE, ["contract"], from_addr=BOB)) == ["<2@t>"]
    assert ids(store.search(ALICE, ["contract"], from_addr="  Bob@Enron.COM ")) == ["<2@t>"]
    assert ids(store.search(ALICE, ["contract"], to_addr=BOB)) == ["<1@t>"]
    assert ids(store.search(ALICE, ["houston"], to_addr=DAVE)) == ["<3@t>"]   # cc counts as to
    assert store.search(ALICE, ["contract"], from_addr=CAROL) == []


def test_date_bounds_after_inclusive_before_exclusive(store):
    assert ids(store.search(ALICE, ["houston"], sent_after="2001-05-03")) == ["<3@t>"]
    assert ids(store.search(ALICE, ["houston"], sent_before="2001-05-03")) == ["<1@t>"]
    assert ids(store.search(ALICE, ["contract"], sent_after="2001-05-03", sent_before="2001-05-04")) == ["<2@t>"]
    assert ids(store.search(ALICE, ["power"], sent_before="2001-05-04")) == []
    assert ids(store.search(ALICE, ["power"], sent_after="2001-05-04")) == ["<4@t>"]


def test_max_results_and_snippet(store):
    hits = store.search(ALICE, ["contract"], max_results=2)
    assert ids(hits) == ["<6@t>", "<2@t>"]
    assert store.search(ALICE, ["contract"], max_results=0) == []
    assert "<b>contract</b>" in hits[1].snippet.lower()
    assert hits[1].subject == "Re: Gas contract" and hits[1].from_address == BOB
    assert hits[1].date == "2001-05-03 12:30:00"
    assert hits[1].to_dict()["from"] == BOB


def test_no_usable_keyword_lists_newest_with_filters(store):
    assert ids(store.search(CAROL, [], max_results=2)) == ["<5@t>", "<4@t>"]
    assert ids(store.search(CAROL, ["  ", "*"], from_addr=CAROL)) == ["<5@t>", "<3@t>"]


@pytest.mark.parametrize("keyword", ['"', '""', "*", "gas*", "NEAR(", "NEAR(gas contract)", "OR",
                                     "gas OR lunch", "AND NOT", "gas AND NOT contract", "col:",
                                     "subject:gas", "{subject}: gas", "^gas", "-gas", "(", ")",
                                     "'; DROP TABLE emails; --", "a\x00b", "\ud800", "日本語",
                                     "💥", "x" * 50000, "gas " * 2000, "\\", "%", "_"])
def test_fts_syntax_and_injection_never_raise(store, keyword):
    store.search(ALICE, [keyword])
    store.search(ALICE, ["contract", keyword], from_addr=keyword, to_addr=keyword,
                 sent_after=keyword, sent_before=keyword)
    assert store.read(keyword, keyword) is None
    assert store.count() == 6


def test_operators_are_matched_as_words_not_syntax(store):
    # "gas OR lunch" is the phrase gas-or-lunch, which appears nowhere
    assert store.search(ALICE, ["gas OR lunch"]) == []
    # "subject:gas" is the phrase "subject gas", not a column filter
    assert store.search(ALICE, ["subject:gas"]) == []
    assert ids(store.search(ALICE, ['"contract"'])) == ["<6@t>", "<2@t>", "<1@t>"]


def test_fts_query_quotes_every_keyword():
    assert fts_query(["a", 'say "hi"', " ", "*"]) == '"a" AND "say ""hi"""'
    assert fts_query("NEAR(x)") == '"NEAR(x)"'
    assert fts_query([]) is None


def test_read_is_scoped_and_tolerates_brackets(store):
    email = store.read(DAVE, "<3@t>")
    assert email.subject == "Houston trip" and email.to == [ALICE] and email.cc == [DAVE]
    assert store.read(DAVE, "3@t").message_id == "<3@t>"
    assert store.read(BOB, "<3@t>") is None
    assert store.read(ALICE, "<4@t>").bcc == [ALICE]
    assert store.in_inbox(ALICE, "<6@t>") and not store.in_inbox(ALICE, "<7@t>")
    for no_inbox in (None, "", "  "):
        with pytest.raises(ValueError, match="inbox address is required"):
            store.read(no_inbox, "<3@t>")
        with pytest.raises(ValueError, match="inbox address is required"):
            store.search(no_inbox, ["houston"])


def test_inboxes_and_count(store):
    assert store.count() == 6
    assert store.inboxes() == sorted([ALICE, BOB, CAROL, DAVE, "news@list.com", "all@list.com"])
    assert store.inbox_size(ALICE) == 5
