"""The synthetic corpus generator: determinism, structure, scenarios and their distractors."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import defaultdict

import pytest

from inboxrl.synth import generate as synth
from inboxrl.synth.facts import fold


@pytest.fixture(scope="module")
def corpus():
    return synth.generate(seed=11, num_emails=200)


@pytest.fixture(scope="module")
def by_id(corpus):
    return {e.message_id: (e, owners) for e, owners in corpus.records}


def _digest(corpus) -> str:
    h = hashlib.sha256()
    for email, owners in corpus.records:
        h.update(synth.record_to_json(email, owners).encode())
    for s in corpus.scenarios:
        h.update(json.dumps(s.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def test_same_seed_same_corpus_and_different_seed_differs(corpus):
    again = synth.generate(seed=11, num_emails=200)
    assert again.records == corpus.records
    assert again.scenarios == corpus.scenarios
    other = synth.generate(seed=12, num_emails=200)
    assert _digest(other) != _digest(corpus)
    assert {s.question for s in other.scenarios} != {s.question for s in corpus.scenarios}


def test_independent_of_hash_randomisation(corpus):
    code = ("from inboxrl.synth import generate as synth; import hashlib, json\n"
            "c = synth.generate(seed=11, num_emails=200); h = hashlib.sha256()\n"
            "[h.update(synth.record_to_json(e, o).encode()) for e, o in c.records]\n"
            "[h.update(json.dumps(s.to_dict(), sort_keys=True).encode()) for s in c.scenarios]\n"
            "print(h.hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == _digest(corpus)


def test_streamed_records_equal_materialised(corpus):
    lazy = synth.generate(seed=11, num_emails=200, materialize=False)
    assert isinstance(lazy.records, synth.RecordStream) and len(lazy.records) == 200
    assert list(lazy.records) == corpus.records
    assert list(lazy.records) == corpus.records  # a second pass regenerates the same
    assert lazy.scenarios == corpus.scenarios


def test_size_ids_and_headers(corpus, by_id):
    assert len(corpus.records) == 200 and len(by_id) == 200  # exact size, unique ids
    assert corpus.num_inboxes == 5
    domain = corpus.world.domain
    for email, owners in corpus.records:
        assert re.fullmatch(r"<\d{14}\.\d{9}\.JavaMail@[a-z0-9.-]+>", email.message_id)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", email.date)
        assert "2000-01-01" <= email.date <= "2002-03-01"
        assert email.subject and email.body and email.from_address and email.to
        assert owners and set(owners) <= set(corpus.inboxes)
        assert owners[0] in (email.from_address, *email.to, *email.cc) or \
            email.to == [f"all.employees@{domain}"]
    subjects = [e.subject for e, _ in corpus.records]
    assert any(s.startswith("Re: ") for s in subjects)
    assert any(s.startswith("FW: ") for s in subjects)
    quoted = [e for e, _ in corpus.records if "-----Original Message-----" in e.body]
    assert quoted and all(e.subject.startswith(("Re: ", "FW: ")) for e in quoted)
    dates = sorted(e.date for e, _ in corpus.records)
    assert dates[0] < "2000-07-01" and dates[-1] > "2001-07-01"  # spread over ~2 years


def test_train_and_test_inboxes_are_disjoint(corpus):
    train = {s.inbox_address for s in corpus.scenarios if s.split == "train"}
    test = {s.inbox_address for s in corpus.scenarios if s.split == "test"}
    assert train and test and not train & test
    assert set(corpus.test_inboxes) == test and set(corpus.train_inboxes) >= train
    assert {s.split for s in corpus.scenarios} == {"train", "test"}
    # no email is shared between a train inbox and a test inbox
    for _, owners in corpus.records:
        assert not (set(owners) & set(corpus.test_inboxes) and set(owners) - set(corpus.test_inboxes))


def test_each_scenario_is_answered_by_its_reference(corpus, by_id):
    assert len(corpus.scenarios) >= 40
    assert len({s.id for s in corpus.scenarios}) == len(corpus.scenarios)
    asked = [(s.inbox_address, s.question) for s in corpus.scenarios]
    assert len(set(asked)) == len(asked)  # no question asked twice in one inbox
    for s in corpus.scenarios:
        assert len(s.message_ids) == 1
        email, owners = by_id[s.message_ids[0]]
        assert s.inbox_address in owners
        assert s.answer and s.answer in email.body
        assert s.query_date > email.date[:10]
        assert 0.0 <= s.how_realistic <= 1.0
        assert s.question.endswith("?")


def test_each_scenario_has_distractors_with_same_keywords_other_value(corpus, by_id):
    assert [f.scenario_id for f in corpus.facts] == [s.id for s in corpus.scenarios]
    newer = 0
    for s, fact in zip(corpus.scenarios, corpus.facts):
        ref, _ = by_id[s.message_ids[0]]
        assert fact.distractor_ids and len(fact.distractor_ids) == len(fact.distractor_values)
        for did, value in zip(fact.distractor_ids, fact.distractor_values):
            email, owners = by_id[did]
            assert s.inbox_address in owners
            text = f"{email.subject} {email.body}".lower()
            assert all(k.lower() in text for k in fact.keywords), (fact.keywords, email.subject)
            assert all(k.lower() in f"{ref.subject} {ref.body}".lower() for k in fact.keywords)
            assert value in email.body  # the distractor states its own value ...
            assert fold(s.answer) not in fold(value) and fold(value) not in fold(s.answer)
            assert s.answer.lower() not in email.body.lower()  # ... and never the answer
        newer += any(by_id[d][0].date > ref.date for d in fact.distractor_ids)
    assert newer / len(corpus.scenarios) >= 0.7  # the distractor usually ranks first


def test_questions_name_what_tells_the_reference_apart(corpus, by_id):
    # the reference's subject words that differ from each distractor's subject appear in
    # the question, so reading the right email (and only it) answers the question
    for s, fact in zip(corpus.scenarios, corpus.facts):
        ref, _ = by_id[s.message_ids[0]]
        for did in fact.distractor_ids:
            other, _ = by_id[did]
            if other.subject.startswith("FW: "):
                continue
            words = set(re.findall(r"[A-Za-z0-9]+", ref.subject.replace("Re: ", "")))
            extra = words - set(re.findall(r"[A-Za-z0-9]+", other.subject))
            extra -= {w for w in extra if re.fullmatch(r"(INV|PO)|\d{5}", w)}  # codes
            assert extra and any(w in s.question for w in extra), (s.question, ref.subject)


def test_all_fact_kinds_appear():
    big = synth.generate(seed=3, num_emails=2000)
    kinds = defaultdict(int)
    for f in big.facts:
        kinds[f.kind] += 1
    assert set(kinds) == {"invoice", "meeting", "deal", "po", "travel", "budget"}
    assert min(kinds.values()) >= 30


@pytest.mark.parametrize("kwargs", [dict(num_emails=30, num_inboxes=4),
                                    dict(num_emails=200, num_inboxes=1),
                                    dict(num_emails=200, fact_share=1.5)])
def test_bad_sizes_raise(kwargs):
    with pytest.raises(ValueError):
        synth.generate(seed=0, **kwargs)


def test_20k_generation_streams(capsys):
    import time

    start = time.process_time()
    corpus = synth.generate(seed=5, num_emails=20_000, materialize=False)
    count = sum(1 for _ in corpus.records)
    seconds = time.process_time() - start
    assert count == 20_000
    assert len(corpus.scenarios) > 4_000
    with capsys.disabled():
        print(f"\n[synth] 20k emails in {seconds:.2f}s CPU ({count / seconds:,.0f} emails/s)")
