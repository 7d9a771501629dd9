"""Synthetic data on disk: ``make_data`` (the ``inboxrl make-data`` command) and the embedded
default dataset used when a run configures no data (``ensure_default_dataset``)."""
from __future__ import annotations

from inboxrl.email.build_report import SCHEMA_VERSION

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from inboxrl.email.scenarios import load_scenarios
from inboxrl.email.store import check_scenarios
from inboxrl.email.store_build import build_store
from inboxrl.synth.generate import generate, write_records, write_scenarios
from inboxrl.synth.world import VERSION
from inboxrl.utils.atomic import atomic_write_json
from inboxrl.utils.cached_build import build_cached

DEFAULT_SEED = 2001
DEFAULT_NUM_EMAILS = 2000
DEFAULT_TEST_FRACTION = 0.25
MIN_TRAIN, MIN_TEST = 400, 100


@dataclass
class MakeDataResult:
    out_dir: Path
    emails_path: Path
    scenarios_path: Path
    db_path: Path | None
    seed: int
    num_emails: int
    num_inboxes: int
    num_train: int
    num_test: int
    seconds: float

    def __str__(self) -> str:
        db = f", store {self.db_path}" if self.db_path else ""
        return (f"wrote {self.num_emails:,} emails in {self.num_inboxes} inboxes and "
                f"{self.num_train + self.num_test:,} scenarios ({self.num_train:,} train, "
                f"{self.num_test:,} test) to {self.out_dir} in {self.seconds:.1f}s "
                f"(seed {self.seed}){db}")


def make_data(out_dir: str | Path, seed: int = 0, num_emails: int = 2000,
              num_inboxes: int | None = None, build_db: bool = True, progress: bool = False,
              test_fraction: float = 0.2) -> MakeDataResult:
    """Generate a corpus and write ``emails.jsonl``, ``scenarios.jsonl``, ``manifest.json``
    and (``build_db``) the SQLite store ``emails.db`` under ``out_dir``, each atomically.

    The records are generated once and written to the jsonl and the store in the same pass.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = generate(seed, num_emails, num_inboxes, test_fraction=test_fraction)
    emails_path, db_path = out / "emails.jsonl", (out / "emails.db") if build_db else None
    records = write_records(corpus.records, emails_path)
    report = None
    if db_path is not None:
        report = build_store(db_path, records, progress=progress)
    else:
        for _ in records:
            pass
    scenarios = corpus.scenarios
    scen_path = write_scenarios(scenarios, out / "scenarios.jsonl")
    n_test = sum(s.split == "test" for s in scenarios)
    result = MakeDataResult(out, emails_path, scen_path, db_path, seed, num_emails,
                            corpus.num_inboxes, len(scenarios) - n_test, n_test,
                            time.perf_counter() - start)
    manifest = {k: v.name if isinstance(v, Path) else v for k, v in asdict(result).items()
                if k != "out_dir"}  # file names relative to the directory, which may move
    manifest.update(version=VERSION, train_inboxes=corpus.train_inboxes,
                    test_inboxes=corpus.test_inboxes,
                    build=report.to_dict() if report is not None else None)
    atomic_write_json(out / "manifest.json", manifest)
    for path in (emails_path, scen_path, db_path, out / "manifest.json"):
        if path is not None:  # temporary files are created owner-only; these are shareable
            path.chmod(0o644)
    return result


@dataclass
class DefaultDataset:
    root: Path
    db_path: Path
    scenarios_path: Path
    num_train: int
    num_test: int
    seed: int = DEFAULT_SEED
    num_emails: int = DEFAULT_NUM_EMAILS


def default_dataset_dir(cache_dir: str | Path | None = None, seed: int = DEFAULT_SEED,
                        num_emails: int = DEFAULT_NUM_EMAILS) -> Path:
    """``<root>/data/synthetic-v1-<seed>-<n>-schema<store schema version>`` with root = ``cache_dir``, else
    ``$INBOXRL_CACHE``, else ``~/.cache/inboxrl`` (the same root as the default model)."""
    if cache_dir is not None:
        root = Path(cache_dir).expanduser()
    elif os.environ.get("INBOXRL_CACHE"):
        root = Path(os.environ["INBOXRL_CACHE"]).expanduser()
    else:
        root = Path.home() / ".cache" / "inboxrl"
    return root / "data" / f"{VERSION}-{seed}-{num_emails}-schema{SCHEMA_VERSION}"


def _load_cached(final: Path) -> DefaultDataset | None:
    try:
        m = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
        if m.get("version") != VERSION:
            return None
        ds = DefaultDataset(final, final / "emails.db", final / "scenarios.jsonl",
                            int(m["num_train"]), int(m["num_test"]), int(m["seed"]),
                            int(m["num_emails"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ds if ds.db_path.is_file() and ds.scenarios_path.is_file() else None


def _check(tmp: Path, result: MakeDataResult) -> None:

    missing = check_scenarios(result.db_path, load_scenarios(tmp / "scenarios.jsonl"))
    if missing or result.num_train < MIN_TRAIN or result.num_test < MIN_TEST:
        raise RuntimeError(f"default synthetic dataset is inconsistent: {result}; "
                           f"{len(missing)} scenarios lack their reference message")


def ensure_default_dataset(cache_dir: str | Path | None = None, seed: int = DEFAULT_SEED,
                           num_emails: int = DEFAULT_NUM_EMAILS) -> DefaultDataset:
    """The embedded default data (store + scenarios), built once and then reused.

    The first call generates the corpus (about 2,000 emails, >= 400 train and >= 100 test
    scenarios from disjoint inboxes), builds the store, checks every reference message is in
    its inbox, and renames the finished temporary directory into place, so a crash never
    leaves a half-built dataset and concurrent first calls are safe. Later calls only read
    ``manifest.json``. The location is ``default_dataset_dir(cache_dir, seed, num_emails)``; the
    temporary directory of a build that was killed is deleted by the next build.
    """
    final = default_dataset_dir(cache_dir, seed, num_emails)
    cached = _load_cached(final)
    if cached is not None:
        return cached

    def build(tmp: Path) -> None:
        result = make_data(tmp, seed=seed, num_emails=num_emails, test_fraction=DEFAULT_TEST_FRACTION)
        _check(tmp, result)
        tmp.chmod(0o755)  # mkdtemp creates an owner-only directory

    build_cached(final, lambda d: _load_cached(d) is not None, build, tmp_suffix=".tmp")
    cached = _load_cached(final)
    if cached is None:
        raise RuntimeError(f"could not build the default synthetic dataset at {final}")
    return cached
