"""Deterministic synthetic inboxes with questions whose keyword search returns distractors.

``generate(seed, num_emails)`` builds a fictional energy-trading company (people, partner
firms, projects), picks ``num_inboxes`` owners, splits them into disjoint train and test
inboxes and writes each inbox's mail: fact families (invoices, meetings, deals, purchase
orders, travel, project budgets; see ``synth_facts``) and background threads. Each scenario
asks about one value stated in exactly one email of its inbox; the other members of its
family share its keywords and state a different value, usually in a newer email.

Everything is a function of ``seed`` (string-seeded ``random.Random`` per inbox; no global
random state, no ``hash()``), so the same arguments always give the same corpus. Inboxes are
generated independently, so a large corpus streams inbox by inbox (``records`` is then a
re-iterable stream and memory stays at one inbox's mail).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from inboxrl.email.types import Email, Scenario
from inboxrl.synth import facts as synth_facts
from inboxrl.synth.threads import FactInfo, add_background, add_family
from inboxrl.synth.world import Mailbox, VERSION, World, build_world, default_num_inboxes

Record = tuple[Email, list[str]]
MATERIALIZE_LIMIT = 50_000  # corpora up to this size are kept as lists by default
FACT_SHARE = 0.55  # share of threads that are fact families
_FAMILY_TRIES = 8


@dataclass
class InboxChunk:
    """Everything generated for one inbox."""

    inbox: int
    records: list[Record]
    scenarios: list[Scenario]
    facts: list[FactInfo]


def _draw_family(mb: Mailbox, used: set, k: int):
    """A family of up to ``k`` members whose key is new in this inbox, or ``None``."""
    r = mb.rng
    for _ in range(_FAMILY_TRIES):
        fam = synth_facts.KINDS[r.randrange(len(synth_facts.KINDS))](mb, k)
        if (fam is None or len(fam.members) < 2 or (fam.kind, fam.key) in used
                or not synth_facts.values_distinct(fam.members)):
            continue
        used.add((fam.kind, fam.key))
        return fam
    return None


def generate_inbox(world: World, inbox: int, fact_share: float = FACT_SHARE) -> InboxChunk:
    """Generate inbox ``inbox`` of ``world``: exactly ``world.budgets[inbox]`` records."""
    mb = Mailbox(world, inbox)
    budget, r = world.budgets[inbox], mb.rng
    scenarios: list[Scenario] = []
    facts: list[FactInfo] = []
    used: set = set()
    counter = iter(range(1, 10**9))

    def next_id() -> str:
        return f"syn{world.seed}-{inbox:03d}-{next(counter):05d}"

    while len(mb.records) < budget:
        left = budget - len(mb.records)
        fam = None
        if left >= 2 and r.random() < fact_share:
            fam = _draw_family(mb, used, r.randint(2, min(4, left)))
        if fam is not None:
            add_family(mb, fam, left, next_id, scenarios, facts)
        else:
            add_background(mb, left)
    return InboxChunk(inbox, mb.records, scenarios, facts)


class RecordStream:
    """A re-iterable stream of ``(Email, owners)``; each pass regenerates the same records.

    A completed pass also stores the scenarios and facts on the owning corpus, so reading
    ``corpus.scenarios`` after one pass over the records costs nothing more.
    """

    def __init__(self, corpus: "SyntheticCorpus"):
        self._corpus = corpus

    def __len__(self) -> int:
        return self._corpus.num_emails

    def __iter__(self) -> Iterator[Record]:
        scenarios, facts = [], []
        for chunk in self._corpus.iter_chunks():
            yield from chunk.records
            scenarios.extend(chunk.scenarios)
            facts.extend(chunk.facts)
        self._corpus._set_questions(scenarios, facts)


@dataclass
class SyntheticCorpus:
    """A generated corpus. ``records`` is a list (materialised) or a ``RecordStream``."""

    seed: int
    num_emails: int
    num_inboxes: int
    world: World = field(repr=False)
    fact_share: float = FACT_SHARE
    records: list[Record] | RecordStream = field(default_factory=list, repr=False)
    _scenarios: list[Scenario] | None = field(default=None, repr=False)
    _facts: list[FactInfo] | None = field(default=None, repr=False)

    def iter_chunks(self) -> Iterator[InboxChunk]:
        for inbox in range(self.num_inboxes):
            yield generate_inbox(self.world, inbox, self.fact_share)

    def _set_questions(self, scenarios: list[Scenario], facts: list[FactInfo]) -> None:
        self._scenarios, self._facts = scenarios, facts

    def _ensure_questions(self) -> None:
        if self._scenarios is None:
            for _ in self.records:  # one pass fills them (RecordStream.__iter__)
                pass

    @property
    def scenarios(self) -> list[Scenario]:
        """All scenarios, train and test (a full generation pass if not yet known)."""
        self._ensure_questions()
        return self._scenarios

    @property
    def facts(self) -> list[FactInfo]:
        """One ``FactInfo`` per scenario, same order: its keywords and distractors."""
        self._ensure_questions()
        return self._facts

    @property
    def inboxes(self) -> list[str]:
        return [p.address for p in self.world.owners]

    @property
    def train_inboxes(self) -> list[str]:
        return [p.address for i, p in enumerate(self.world.owners)
                if i not in self.world.test_inboxes]

    @property
    def test_inboxes(self) -> list[str]:
        return [p.address for i, p in enumerate(self.world.owners) if i in self.world.test_inboxes]


def generate(seed: int, num_emails: int, num_inboxes: int | None = None,
             test_fraction: float = 0.2, fact_share: float = FACT_SHARE,
             materialize: bool | None = None) -> SyntheticCorpus:
    """Generate a corpus of exactly ``num_emails`` emails over ``num_inboxes`` inboxes.

    ``num_inboxes`` defaults to ``default_num_inboxes(num_emails)`` (5 for 200 emails, 16
    for 2,000, 150 from about 190,000). About ``test_fraction`` of the inboxes (at least one,
    never all) are test inboxes; their scenarios have ``split='test'``, the others 'train'.
    ``materialize`` (default: ``num_emails <= 50,000``) keeps records in a list; otherwise
    ``records`` is a ``RecordStream`` regenerated on each pass. Raises ``ValueError`` for
    sizes below 20 emails per inbox or fewer than 2 inboxes.
    """
    if num_inboxes is None:
        num_inboxes = default_num_inboxes(num_emails)
    if not 0.0 <= fact_share <= 1.0:
        raise ValueError(f"fact_share must be in [0, 1], got {fact_share}")
    world = build_world(seed, num_emails, num_inboxes, test_fraction)
    corpus = SyntheticCorpus(seed, num_emails, num_inboxes, world, fact_share)
    if materialize is None:
        materialize = num_emails <= MATERIALIZE_LIMIT
    if materialize:
        records, scenarios, facts = [], [], []
        for chunk in corpus.iter_chunks():
            records.extend(chunk.records)
            scenarios.extend(chunk.scenarios)
            facts.extend(chunk.facts)
        corpus.records = records
        corpus._set_questions(scenarios, facts)
    else:
        corpus.records = RecordStream(corpus)
    return corpus


def record_to_json(email: Email, owners: list[str]) -> str:
    """One ``emails.jsonl`` line: the Email fields plus ``owners``."""
    d = email.to_dict()
    d["owners"] = owners
    return json.dumps(d, ensure_ascii=False)


def iter_corpus_records(path: str | Path) -> Iterator[Record]:
    """Read ``emails.jsonl`` written by ``write_corpus`` back as ``(Email, owners)``."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                owners = d.pop("owners", [])
                yield Email(**{k: d[k] for k in Email.__dataclass_fields__ if k in d}), owners


class _AtomicLines:
    """Write lines to a temporary file beside ``path``; rename over it on success only."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.f = os.fdopen(fd, "w", encoding="utf-8")

    def __enter__(self):
        return self.f

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
            self.f.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
        return False


def write_records(records: Iterable[Record], path: str | Path) -> Iterator[Record]:
    """Yield ``records`` unchanged while writing them to ``path`` (jsonl, atomic at the end)."""
    with _AtomicLines(Path(path)) as f:
        for email, owners in records:
            f.write(record_to_json(email, owners) + "\n")
            yield email, owners


def write_scenarios(scenarios: Iterable[Scenario], path: str | Path) -> Path:
    """Write scenarios as jsonl (the layout ``scenarios.load_scenarios`` reads), atomically."""
    with _AtomicLines(Path(path)) as f:
        for s in scenarios:
            f.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
    return Path(path)


@dataclass
class CorpusPaths:
    emails: Path
    scenarios: Path


def write_corpus(corpus: SyntheticCorpus, out_dir: str | Path) -> CorpusPaths:
    """Write ``emails.jsonl`` and ``scenarios.jsonl`` under ``out_dir`` (each atomic)."""
    out = Path(out_dir)
    emails = out / "emails.jsonl"
    for _ in write_records(corpus.records, emails):
        pass
    return CorpusPaths(emails, write_scenarios(corpus.scenarios, out / "scenarios.jsonl"))
