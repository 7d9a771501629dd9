"""The store on the synthetic corpus: every scenario's references are in its inbox and findable."""
from __future__ import annotations

import pytest

from inboxrl.email.store import EmailStore, check_scenarios
from inboxrl.email.store_build import build_store

synth = pytest.importorskip("inboxrl.synth.generate")


def test_synthetic_scenarios_resolve_in_their_inboxes(tmp_path):
    corpus = synth.generate(seed=3, num_emails=1000)
    records = list(corpus.records)
    db = tmp_path / "syn.db"
    report = build_store(db, records, progress=False)
    assert report.stored == report.read == 1000
    scenarios = corpus.scenarios
    assert scenarios and check_scenarios(db, scenarios) == []
    by_id = {email.message_id: email for email, _ in records}
    with EmailStore(db) as store:
        for sc in scenarios[:20]:
            ref = by_id[sc.message_ids[0]]
            words = [w for w in ref.subject.replace(":", " ").split() if w.isalpha() and len(w) > 3][:2]
            hits = store.search(sc.inbox_address, words, max_results=10,
                                sent_after=ref.date[:10], from_addr=ref.from_address)
            assert sc.message_ids[0] in [h.message_id for h in hits], (sc.id, words)
            assert store.read(sc.inbox_address, sc.message_ids[0]).body == ref.body[:20000]
