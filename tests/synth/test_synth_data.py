"""Synthetic data on disk: jsonl round trip, make_data + the SQLite store, the default dataset."""
from __future__ import annotations

import json
import os

import pytest

from inboxrl.email.judge import NormalizedJudge
from inboxrl.email.scenarios import load_scenarios
from inboxrl.email.store import EmailStore, check_scenarios
from inboxrl.synth import data as synth_data, generate as synth


def test_write_corpus_round_trip(tmp_path):
    corpus = synth.generate(seed=4, num_emails=200)
    paths = synth.write_corpus(corpus, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["emails.jsonl", "scenarios.jsonl"]
    assert list(synth.iter_corpus_records(paths.emails)) == corpus.records
    first = json.loads(paths.emails.read_text().splitlines()[0])
    assert set(first) >= {"message_id", "date", "subject", "from_address", "to", "cc", "bcc",
                          "body", "owners"}
    assert load_scenarios(paths.scenarios) == corpus.scenarios


def test_interrupted_write_leaves_no_file(tmp_path):
    corpus = synth.generate(seed=4, num_emails=200)
    target = tmp_path / "emails.jsonl"
    it = synth.write_records(corpus.records, target)
    for _ in range(10):
        next(it)
    it.close()  # consumer stopped early: nothing is renamed into place
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("made")
    return synth_data.make_data(out, seed=9, num_emails=600)


def test_make_data_builds_a_consistent_store(made):
    assert made.db_path.is_file() and made.emails_path.is_file()
    manifest = json.loads((made.out_dir / "manifest.json").read_text())
    assert manifest["num_emails"] == 600 and manifest["build"]["stored"] == 600
    assert manifest["num_train"] == made.num_train > 0 and manifest["num_test"] == made.num_test > 0
    scenarios = load_scenarios(made.scenarios_path)
    assert len(scenarios) == made.num_train + made.num_test
    assert check_scenarios(made.db_path, scenarios) == []
    assert "600 emails" in str(made)


def test_store_search_shows_distractors_first_and_read_answers(made):
    corpus = synth.generate(seed=9, num_emails=600)
    facts = {f.scenario_id: f for f in corpus.facts}
    judge = NormalizedJudge()
    distractor_first = 0
    with EmailStore(made.db_path) as store:
        for s in corpus.scenarios:
            fact = facts[s.id]
            hits = store.search(s.inbox_address, fact.keywords, max_results=10)
            ids = [h.message_id for h in hits]
            assert set(fact.distractor_ids) & set(ids)  # keyword search finds a distractor
            distractor_first += bool(ids) and ids[0] in fact.distractor_ids
            ref = store.read(s.inbox_address, s.message_ids[0])
            assert ref is not None and s.answer in ref.body
            assert judge.judge(s.question, s.answer, s.answer).correct
            for value in set(fact.distractor_values):
                assert judge.judge(s.question, s.answer, value).correct is False, (s.answer, value)
        other = next(a for a in corpus.inboxes if a != corpus.scenarios[0].inbox_address)
        assert store.read(other, corpus.scenarios[0].message_ids[0]) is None
    assert distractor_first / len(corpus.scenarios) >= 0.6


def test_default_dataset_is_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("INBOXRL_CACHE", str(tmp_path / "env-cache"))
    ds = synth_data.ensure_default_dataset(cache_dir=tmp_path / "cache")
    assert ds.root == tmp_path / "cache" / "data" / "synthetic-v1-2001-2000-schema3"
    assert ds.num_train >= 400 and ds.num_test >= 100
    scenarios = load_scenarios(ds.scenarios_path)
    assert sum(s.split == "test" for s in scenarios) == ds.num_test
    assert check_scenarios(ds.db_path, scenarios) == []
    with EmailStore(ds.db_path) as store:
        assert store.count() == 2000
    mtime = os.stat(ds.db_path).st_mtime_ns
    again = synth_data.ensure_default_dataset(cache_dir=tmp_path / "cache")
    assert again == ds and os.stat(ds.db_path).st_mtime_ns == mtime
    assert sorted(p.name for p in (tmp_path / "cache" / "data").iterdir()) == [f".{ds.root.name}.lock", ds.root.name]
    assert not (tmp_path / "env-cache").exists()


def test_default_dataset_location_and_broken_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INBOXRL_CACHE", str(tmp_path / "env"))
    expected = tmp_path / "env" / "data" / "synthetic-v1-2001-2000-schema3"
    assert synth_data.default_dataset_dir() == expected
    expected.mkdir(parents=True)
    (expected / "manifest.json").write_text("{not json")  # a broken earlier copy
    ds = synth_data.ensure_default_dataset()
    assert ds.root == expected and ds.db_path.is_file()
    assert json.loads((expected / "manifest.json").read_text())["num_test"] == ds.num_test
    assert sorted(p.name for p in expected.parent.iterdir()) == [f".{expected.name}.lock", expected.name]


def test_default_dataset_refuses_too_few_scenarios(tmp_path):
    with pytest.raises(RuntimeError, match="inconsistent"):
        synth_data.ensure_default_dataset(cache_dir=tmp_path, seed=3, num_emails=400)
    # the temporary build was removed; only the (unlocked) lock file stays
    assert [p.name for p in (tmp_path / "data").iterdir()] == [".synthetic-v1-3-400-schema3.lock"]


def test_concurrent_first_builds_agree(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from inboxrl.synth.data import ensure_default_dataset as e; "
            "d = e(cache_dir=sys.argv[1]); print(d.db_path, d.num_train, d.num_test)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0] and outs[0][0].strip()
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == [  # no temp dirs left
        ".synthetic-v1-2001-2000-schema3.lock", "synthetic-v1-2001-2000-schema3"]
    assert check_scenarios(data / "synthetic-v1-2001-2000-schema3" / "emails.db",
                           load_scenarios(data / "synthetic-v1-2001-2000-schema3")) == []


def test_make_data_without_store_matches_generate(tmp_path):
    result = synth_data.make_data(tmp_path, seed=2, num_emails=300, build_db=False)
    assert result.db_path is None and not (tmp_path / "emails.db").exists()
    corpus = synth.generate(seed=2, num_emails=300)
    assert list(synth.iter_corpus_records(result.emails_path)) == corpus.records
    assert load_scenarios(result.scenarios_path) == corpus.scenarios
    assert (result.num_train, result.num_test) == (
        sum(s.split == "train" for s in corpus.scenarios),
        sum(s.split == "test" for s in corpus.scenarios))
