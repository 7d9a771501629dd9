"""Load scenarios from jsonl / parquet files, filter, shuffle, pick validation subsets.

Two layouts are read, and they share the column names: the synthetic ``scenarios.jsonl``
written by ``synth`` and the public ``enron_emails_sample_questions`` layout (``id`` as an
integer, ``message_ids`` as a list, ``query_date``, ``how_realistic``, ``split``). Required
columns: ``id, question, answer, message_ids, inbox_address, query_date``; ``how_realistic``
and ``split`` are optional (a missing ``split`` is taken from the file name when it names
``train`` or ``test``, else ``train``). Ids become strings. Every problem with a file is a
``ScenarioError`` whose one-line message names the file.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from inboxrl.utils.atomic import atomic_write_json

from inboxrl.email.types import Scenario

REQUIRED = ("id", "question", "answer", "message_ids", "inbox_address", "query_date")
OPTIONAL = ("how_realistic", "split")
_SUFFIXES = (".jsonl", ".json", ".parquet")


class ScenarioError(ValueError):
    """A scenario file that cannot be read or lacks columns (the message names the file)."""


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise ScenarioError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() not in _SUFFIXES:
            raise ScenarioError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")
        return [path]
    for name in ("scenarios.jsonl", "scenarios.parquet"):
        if (path / name).is_file():
            return [path / name]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES
                   and p.name not in ("emails.jsonl", "manifest.json") and not p.name.startswith("."))
    if not found:
        raise ScenarioError(f"{path}: directory holds no .jsonl, .json or .parquet scenario file")
    return found


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read ({e})") from None
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{path}: invalid JSON ({e})") from None
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ScenarioError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
    if not all(isinstance(r, dict) for r in rows):
        raise ScenarioError(f"{path}: every record must be a JSON object")
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt / non-parquet files
        raise ScenarioError(f"{path}: cannot read parquet ({type(e).__name__}: {e})") from None
    _check_columns(path, table.column_names)
    return table.to_pylist()


def _check_columns(path: Path, columns: Iterable[str]) -> None:
    missing = [c for c in REQUIRED if c not in set(columns)]
    if missing:
        raise ScenarioError(f"{path}: missing columns: {', '.join(missing)} "
                            f"(required: {', '.join(REQUIRED)})")


def _str_id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _message_ids(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        else:
            return [value] if value else []
    if hasattr(value, "tolist"):  # numpy arrays from pandas-written parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    return [_str_id(v) for v in value]


def _date(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        if (value.hour, value.minute, value.second) == (0, 0, 0):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return str(value).strip()


def _split_from_name(path: Path) -> str:
    name = path.stem.lower()
    return "test" if "test" in name else "train"


def _to_scenario(path: Path, n: int, row: dict[str, Any], default_split: str) -> Scenario:
    where = f"{path}: record {n}"
    for col in ("id", "question", "answer", "inbox_address", "query_date"):
        v = row.get(col)
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
            raise ScenarioError(f"{where}: empty '{col}'")
    ids = _message_ids(row.get("message_ids"))
    if ids is None:
        raise ScenarioError(f"{where}: 'message_ids' must be a list of ids")
    realistic = row.get("how_realistic")
    try:
        realistic = None if realistic is None else float(realistic)
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}: 'how_realistic' is not a number ({realistic!r})") from None
    if realistic is not None and math.isnan(realistic):
        realistic = None
    split = row.get("split")
    split = default_split if split is None or str(split).strip() == "" else str(split).strip()
    return Scenario(id=_str_id(row["id"]), question=str(row["question"]).strip(),
                    answer=str(row["answer"]).strip(), message_ids=ids,
                    inbox_address=str(row["inbox_address"]).strip().lower(),
                    query_date=_date(row["query_date"]), how_realistic=realistic, split=split)


def read_scenario_file(path: str | Path) -> list[Scenario]:
    """All scenarios of one .jsonl / .json / .parquet file, in file order."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        rows = _read_parquet(path)
    else:
        rows = _read_jsonl(path)
        if rows:
            _check_columns(path, set().union(*(r.keys() for r in rows)))
    default_split = _split_from_name(path)
    return [_to_scenario(path, n, row, default_split) for n, row in enumerate(rows, 1)]


def _dedupe_ids(path: Path, scenarios: list[Scenario]) -> list[Scenario]:
    """Ids must be unique; ids repeated only across splits become ``<split>/<id>``."""
    seen: dict[str, set[str]] = {}
    for s in scenarios:
        seen.setdefault(s.id, set()).add(s.split)
    if all(len(v) == 1 for v in seen.values()) and len(seen) == len(scenarios):
        return scenarios
    counts = Counter((s.split, s.id) for s in scenarios)
    if len(counts) != len(scenarios):
        dup = sorted({i for (_, i), c in counts.items() if c > 1})[:5]
        raise ScenarioError(f"{path}: duplicate scenario ids: {', '.join(dup)}")
    for s in scenarios:
        s.id = f"{s.split}/{s.id}"
    return scenarios


def load_scenarios(path: str | Path, split: str | None = None, max_messages: int | None = None,
                   exclude_ids: Iterable[str | int] = (), shuffle_seed: int | None = None,
                   limit: int | None = None) -> list[Scenario]:
    """Scenarios from a file or directory, filtered, optionally shuffled, optionally cut.

    A directory with ``scenarios.jsonl`` / ``scenarios.parquet`` loads that file; otherwise
    every ``.jsonl`` / ``.json`` / ``.parquet`` under it (sorted paths; ``emails.jsonl``
    skipped). Filters in order: ``split`` (exact match), ``max_messages`` (at most that many
    reference messages), ``exclude_ids`` (compared as strings). ``shuffle_seed`` shuffles with
    ``random.Random(shuffle_seed)``; ``limit`` keeps the first ``limit`` after that.
    """
    path = Path(path)
    scenarios: list[Scenario] = []
    for f in _files(path):
        scenarios.extend(read_scenario_file(f))
    scenarios = _dedupe_ids(path, scenarios)
    excluded = {_str_id(x) for x in exclude_ids}
    out = [s for s in scenarios
           if (split is None or s.split == split)
           and (max_messages is None or len(s.message_ids) <= max_messages)
           and s.id not in excluded]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(out)
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        out = out[:limit]
    return out


def validation_subset(scenarios: Sequence[Scenario], n: int, seed: int) -> list[Scenario]:
    """``min(n, len)`` scenarios chosen by ``random.Random(seed)`` from the id-sorted list.

    The result depends only on the set of scenarios (not their order), ``n`` and ``seed``, so
    a run and a later evaluation pick the same validation set.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ordered = sorted(scenarios, key=lambda s: s.id)
    return random.Random(seed).sample(ordered, min(n, len(ordered)))


def save_ids(path: str | Path, scenarios: Iterable[Scenario]) -> Path:
    """Write the scenarios' ids (in order) as JSON ``{"ids": [...]}``, atomically."""
    return atomic_write_json(path, {"ids": [s.id for s in scenarios]})


def load_ids(path: str | Path) -> list[str]:
    """The ids written by ``save_ids`` (a bare JSON list of ids is accepted too)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read scenario ids ({e})") from None
    ids = data.get("ids") if isinstance(data, dict) else data
    if not isinstance(ids, list):
        raise ScenarioError(f"{path}: expected {{\"ids\": [...]}} or a JSON list of ids")
    return [_str_id(i) for i in ids]


def select_ids(scenarios: Iterable[Scenario], ids: Sequence[str]) -> list[Scenario]:
    """The scenarios with these ids, in ``ids`` order; ``ScenarioError`` if any is missing."""
    by_id = {s.id: s for s in scenarios}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ScenarioError(f"{len(missing)} saved scenario ids are not in the scenario set "
                            f"(e.g. {', '.join(missing[:5])})")
    return [by_id[i] for i in ids]
