"""Read what a run wrote, tolerantly: every file the viewer uses, and a note for what it skipped.

A run that is still going or was killed mid-write may leave a truncated last line in a
``.jsonl`` file, a half-written step, or no evals yet. Nothing here raises on such input: bad
lines and unreadable files are skipped and each skip is recorded in :class:`Notes` (shown on
the index page and printed by ``inboxrl view``). The files are those of docs/architecture.md:
``config.json``, ``metrics.jsonl``, ``eval_metrics.jsonl``, ``trajectories/step_NNNN.jsonl``,
``eval_logs/eval_step_NNNN.json`` (+ ``_trajectories.jsonl``) and ``eval_logs/baseline_eval.json``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inboxrl.agent.trajectory import Trajectory

STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")
EVAL_FILE = re.compile(r"^eval_step_(\d+)\.json$")


@dataclass
class Notes:
    """What the build skipped or could not show, one readable line each."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def extend(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def read_jsonl(path: Path, notes: Notes, label: str | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file; a line that does not parse (e.g. the truncated
    last line of a killed run) or is not an object is skipped with a note."""
    label = label or path.name
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        notes.add(f"{label}: unreadable ({e.strerror or e})")
        return []
    rows, bad = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(i)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(i)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        notes.add(f"{label}: skipped {len(bad)} line{'s' if len(bad) != 1 else ''} that are not "
                  f"JSON objects (line {shown}; truncated by a killed run?)")
    return rows


def read_json(path: Path, notes: Notes, label: str | None = None) -> dict[str, Any] | None:
    """A JSON object file, or None with a note when it is missing, unreadable or not an object."""
    label = label or path.name
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, json.JSONDecodeError) as e:
        notes.add(f"{label}: skipped, not readable JSON ({e})")
        return None
    if not isinstance(doc, dict):
        notes.add(f"{label}: skipped, not a JSON object")
        return None
    return doc


def load_trajectories(path: Path, notes: Notes, label: str | None = None) -> list[Trajectory]:
    """The trajectories of a ``step_NNNN.jsonl`` (or eval trajectories) file; rows that are not
    trajectories are skipped with a note."""
    label = label or path.name
    out, bad = [], 0
    for row in read_jsonl(path, notes, label):
        try:
            t = Trajectory.from_dict(row)
            _check(t)
        except (TypeError, ValueError, KeyError, AttributeError):
            bad += 1
            continue
        out.append(t)
    if bad:
        notes.add(f"{label}: skipped {bad} row{'s' if bad != 1 else ''} that are not trajectories")
    return out


def _check(t: Trajectory) -> None:
    n = len(t.token_ids)
    if not (len(t.sources) == len(t.logprobs) == len(t.turn_index) == n):
        raise ValueError("token arrays of different lengths")
    if any(i >= len(t.turns) for i in t.turn_index if i >= 0):
        raise ValueError("token of a turn that is not there")
    if not isinstance(t.scenario_id, str):
        raise ValueError("scenario_id")


def last_by_step(rows: list[dict[str, Any]], notes: Notes, label: str) -> dict[int, dict[str, Any]]:
    """Rows by ``step`` (a resumed run appends: the last row of a step wins)."""
    out, bad = {}, 0
    for row in rows:
        try:
            out[int(row["step"])] = row
        except (KeyError, TypeError, ValueError):
            bad += 1
    if bad:
        notes.add(f"{label}: skipped {bad} row{'s' if bad != 1 else ''} without a step number")
    return dict(sorted(out.items()))


@dataclass
class RunFiles:
    """What the viewer found in an output directory (trajectory files are read per page)."""

    root: Path
    config: dict[str, Any] | None
    train: dict[int, dict[str, Any]]  # metrics.jsonl rows by step
    evals: dict[int, dict[str, Any]]  # eval_step_NNNN.json (else eval_metrics.jsonl rows) by step
    step_files: dict[int, Path]
    eval_traj_files: dict[int, Path]
    baseline: dict[str, Any] | None
    notes: Notes


def numbered(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def load_run(root: Path) -> RunFiles:
    """Scan ``root`` (an existing directory); never raises on missing or damaged files."""
    notes = Notes()
    config = read_json(root / "config.json", notes)
    if config is None and not (root / "config.json").exists():
        notes.add("config.json: missing (settings not shown)")
    train = {}
    if (root / "metrics.jsonl").is_file():
        rows = [r for r in read_jsonl(root / "metrics.jsonl", notes) if r.get("kind", "train") == "train"]
        train = last_by_step(rows, notes, "metrics.jsonl")
    else:
        notes.add("metrics.jsonl: missing (no train curves)")
    evals = _load_evals(root, notes)
    return RunFiles(root=root, config=config, train=train, evals=evals,
                    step_files=numbered(root / "trajectories", STEP_FILE),
                    eval_traj_files=_eval_trajectory_files(root / "eval_logs"),
                    baseline=read_json(root / "eval_logs" / "baseline_eval.json", notes,
                                       "eval_logs/baseline_eval.json"),
                    notes=notes)


def _load_evals(root: Path, notes: Notes) -> dict[int, dict[str, Any]]:
    evals: dict[int, dict[str, Any]] = {}
    for step, path in numbered(root / "eval_logs", EVAL_FILE).items():
        doc = read_json(path, notes, f"eval_logs/{path.name}")
        if doc is not None:
            evals[step] = doc
    if (root / "eval_metrics.jsonl").is_file():  # evals whose eval_step file is missing
        rows = read_jsonl(root / "eval_metrics.jsonl", notes)
        for step, row in last_by_step(rows, notes, "eval_metrics.jsonl").items():
            evals.setdefault(step, row)
    return dict(sorted(evals.items()))


def _eval_trajectory_files(folder: Path) -> dict[int, Path]:
    return numbered(folder, re.compile(r"^eval_step_(\d+)_trajectories\.jsonl$"))
