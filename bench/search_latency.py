"""Email-store benchmark: build throughput and inbox-scoped search latency.

Builds a synthetic store (``inboxrl.email.synth.generate`` when it is importable, otherwise a
simple Zipf-vocabulary generator below) with a display name for every sender and recipient
(``john.smith@x`` -> "John Smith", stored and FTS-indexed as real mail's names are), then times
1,000 realistic searches: 1-3 keywords taken from one stored message (not among the corpus's
100 most frequent words, as a person would not search for "that" or "with"), scoped to an inbox
that holds it, without filters, with a ``from_addr`` filter and with a 60-day date range; the
sender's first name alone (a search that only the names index answers); then the worst case,
one of the 20 most frequent words alone. ``--compare-no-names`` also builds the same corpus
without names and prints the with/without ratios measured side by side.

    .venv/bin/python bench/search_latency.py --num-emails 500000

Targets on a 2-core machine: build >= 10,000 emails/s, search p50 <= 5 ms, p99 <= 50 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from inboxrl.email.build_report import BuildOptions
from inboxrl.email.store import EmailStore, build_store
from inboxrl.email.types import Email

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ven", "dor", "gal", "tri",
             "bex", "qua", "zen", "fol", "mar", "pid", "sul", "yo"]


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def simple_corpus(num_emails: int, seed: int = 0, num_people: int = 150,
                  num_external: int = 3000) -> list[tuple[Email, list[str]]]:
    """Zipf-distributed words, 150 employees writing to each other and to outsiders."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    vocab = np.array(_vocabulary(rng, 20000), dtype=object)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.07
    cdf = np.cumsum(weights / weights.sum())
    people = [f"employee{i}@enron.com" for i in range(num_people)]
    outsiders = [f"contact{i}@example{i % 97}.com" for i in range(num_external)]
    start = datetime(1999, 1, 1)
    records = []
    for i in range(num_emails):
        n_body, n_subj = int(nrng.integers(30, 160)), int(nrng.integers(2, 7))
        idx = np.searchsorted(cdf, nrng.random(n_body + n_subj))
        words = vocab[np.minimum(idx, len(vocab) - 1)]
        sender = rng.choice(people) if rng.random() < 0.8 else rng.choice(outsiders)
        to = rng.sample(people, rng.randint(1, 3))
        cc = rng.sample(outsiders, rng.randint(0, 2))
        date = start + timedelta(seconds=rng.randint(0, 3 * 365 * 86400))
        records.append((Email(message_id=f"<{i}.{seed}@bench.inboxrl>",
                              date=date.strftime("%Y-%m-%d %H:%M:%S"),
                              subject=" ".join(words[:n_subj]).capitalize(),
                              from_address=sender, to=to, cc=cc,
                              body=" ".join(words[n_subj:]) + "."), []))
    return records


def make_corpus(num_emails: int, seed: int) -> tuple[list[tuple[Email, list[str]]], str]:
    try:
        from inboxrl.email.synth import generate  # written by another module; optional here
        corpus = generate(seed=seed, num_emails=num_emails)
        return list(corpus.records), "inboxrl.email.synth.generate"
    except (ImportError, AttributeError, TypeError) as e:
        print(f"(synth.generate unavailable: {e!r}; using the bench's simple generator)")
        return simple_corpus(num_emails, seed), "bench simple generator"


def display_name(address: str) -> str:
    """A person-like display name made from an address's local part (``john.smith`` -> John Smith)."""
    local = address.split("@", 1)[0]
    parts = [p for p in local.replace("_", ".").replace("-", ".").split(".") if p]
    return " ".join(p.capitalize() for p in parts) or local


def with_names(records: list[tuple[Email, list[str]]]) -> list[tuple[Email, list[str]]]:
    """The records with ``names`` set for the sender and every recipient."""
    out = []
    for email, owners in records:
        people = [email.from_address, *email.to, *email.cc, *email.bcc]
        out.append((replace(email, names={a: display_name(a) for a in people if a}), owners))
    return out


def _words(email: Email) -> list[str]:
    words = [w.strip(".,;:!?\"'()").lower() for w in (email.subject + " " + email.body).split()]
    return [w for w in words if len(w) >= 4 and w.isalpha()]


def frequent_words(records: list[tuple[Email, list[str]]], n: int, seed: int) -> list[str]:
    """The ``n`` most frequent words over a sample of the corpus (its stop words)."""
    counts: Counter[str] = Counter()
    for email, _ in random.Random(seed).sample(records, min(len(records), 20000)):
        counts.update(_words(email))
    return [w for w, _ in counts.most_common(n)]


def make_queries(records: list[tuple[Email, list[str]]], n: int, seed: int,
                 stop: set[str], common: list[str] | None = None) -> list[dict]:
    """1-3 content words (not among the corpus's stop words) of a random message, in an inbox
    that holds it; with ``common``, one of those frequent words instead (the worst case)."""
    rng = random.Random(seed)
    queries = []
    while len(queries) < n:
        email, owners = rng.choice(records)
        words = [w for w in _words(email) if w not in stop]
        if not words:
            continue
        keywords = [rng.choice(common)] if common else rng.sample(words, min(len(words), rng.randint(1, 3)))
        day = datetime.strptime(email.date[:10], "%Y-%m-%d")
        queries.append({"inbox": rng.choice([email.from_address, *email.to, *email.cc, *owners]),
                        "keywords": keywords, "from_addr": email.from_address,
                        "first_name": display_name(email.from_address).split()[0],
                        "sent_after": (day - timedelta(days=30)).strftime("%Y-%m-%d"),
                        "sent_before": (day + timedelta(days=30)).strftime("%Y-%m-%d")})
    return queries


def time_queries(store: EmailStore, queries: list[dict], variant: str) -> dict:
    """Latency percentiles of ``queries`` with the filters ``variant`` names."""
    latencies, cpu, hits = [], [], 0
    for q in queries:
        kwargs = {"keywords": [q["first_name"]] if variant == "name" else q["keywords"]}
        if variant in ("from", "from+dates"):
            kwargs["from_addr"] = q["from_addr"]
        if variant in ("dates", "from+dates"):
            kwargs.update(sent_after=q["sent_after"], sent_before=q["sent_before"])
        t, c = time.perf_counter(), time.thread_time()
        res = store.search(q["inbox"], **kwargs)
        latencies.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
        hits += bool(res)
    latencies.sort()
    cpu.sort()
    p99 = int(0.99 * (len(latencies) - 1))
    return {"variant": variant, "p50_ms": round(statistics.median(latencies), 3),
            "p99_ms": round(latencies[p99], 3), "max_ms": round(latencies[-1], 3),
            "cpu_p50_ms": round(statistics.median(cpu), 3), "cpu_p99_ms": round(cpu[p99], 3),
            "queries_with_hits": hits}


def build_and_time(records: list[tuple[Email, list[str]]], db: Path, args: argparse.Namespace) -> dict:
    """Build a store of ``records`` at ``db`` and time the searches on it."""
    cpu = time.process_time()
    report = build_store(db, records, BuildOptions(order_by_date=args.order_by_date), progress=False)
    build_cpu = time.process_time() - cpu
    print(report.summary())
    size_mb = db.stat().st_size / 2**20
    stop = frequent_words(records, 100, args.seed)
    queries = make_queries(records, args.num_queries, args.seed + 1, set(stop))
    worst = make_queries(records, args.num_queries, args.seed + 2, set(stop), common=stop[:20])
    with EmailStore(db) as store:
        for q in queries[:50]:  # warm the page cache
            store.search(q["inbox"], q["keywords"])
        results = [time_queries(store, queries, v) for v in ("plain", "from", "dates", "from+dates", "name")]
        results.append(time_queries(store, worst, "common-word"))
    for r in results:
        print(f"search {r['variant']:<11} p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
              f"max {r['max_ms']:7.2f} ms  (CPU p50 {r['cpu_p50_ms']:.3f} p99 {r['cpu_p99_ms']:.3f} ms; "
              f"{r['queries_with_hits']}/{len(queries)} with hits)")
    out = {"build_s": round(report.seconds, 1), "build_emails_per_s": round(report.emails_per_second),
           "build_cpu_s": round(build_cpu, 1), "build_emails_per_cpu_s": round(len(records) / build_cpu),
           "db_mb": round(size_mb, 1), "names": report.names, "search": results}
    print(f"build {out['build_emails_per_s']:,} emails/s wall, {out['build_emails_per_cpu_s']:,} emails per "
          f"CPU second, db {size_mb:.0f} MB  (wall numbers include waiting for a busy machine: "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    return out


def _ratios(named: dict, plain: dict) -> dict:
    ratios = {"build_cpu": round(named["build_emails_per_cpu_s"] / plain["build_emails_per_cpu_s"], 3),
              "db_size": round(named["db_mb"] / plain["db_mb"], 3)}
    for a, b in zip(named["search"], plain["search"]):
        ratios[f"{a['variant']}_cpu_p50"] = round(a["cpu_p50_ms"] / max(b["cpu_p50_ms"], 1e-6), 3)
        ratios[f"{a['variant']}_cpu_p99"] = round(a["cpu_p99_ms"] / max(b["cpu_p99_ms"], 1e-6), 3)
    print("with names / without (CPU time, same corpus, same run): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-emails", type=int, default=500000)
    ap.add_argument("--num-queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--order-by-date", action="store_true", help="build with BuildOptions(order_by_date=True)")
    ap.add_argument("--compare-no-names", action="store_true",
                    help="also build and time the corpus without display names; print the ratios")
    args = ap.parse_args()
    t = time.perf_counter()
    records, source = make_corpus(args.num_emails, args.seed)
    records = with_names(records)
    gen_s = time.perf_counter() - t
    print(f"generated {len(records):,} emails with the {source} in {gen_s:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        named = build_and_time(records, args.db or Path(tmp) / "bench.db", args)
        out = {"source": source, "num_emails": len(records), "generate_s": round(gen_s, 1), **named,
               "load_average": round(os.getloadavg()[0], 1), "cpu_count": os.cpu_count()}
        if args.compare_no_names:
            print("-- the same corpus without display names", flush=True)
            plain = [(replace(e, names={}), o) for e, o in records]
            out["without_names"] = build_and_time(plain, Path(tmp) / "plain.db", args)
            out["ratios_with_over_without_names"] = _ratios(named, out["without_names"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
