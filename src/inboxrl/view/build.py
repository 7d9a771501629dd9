"""``inboxrl view OUTPUT_DIR``: build ``OUTPUT_DIR/view/`` from what the run wrote.

Pages: ``index.html`` (settings, eval trend, train curves, steps), ``evals.html`` (Detailed
Rubric Statistics side by side), ``steps/step_NNNN.html`` (Group Summary, Turn-by-Turn
Advantage heat maps), ``rollouts/step_NNNN/gGGG_rRR.html`` (conversation and tokens),
``evals/eval_NNNN.html`` (per scenario vs the baseline) and ``rollouts/eval_NNNN/*.html``.
Plain HTML and CSS with SVG plots: the folder opens from disk, no server, no network.

Steps and evals are built in parallel processes. A re-run reuses the pages of a step or eval
whose source files (and neighbours, and the viewer's own code) did not change, recorded in
``view/manifest.json``, so refreshing a running run rebuilds only what is new.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib.resources import files
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from inboxrl.utils.atomic import atomic_write_json
from inboxrl.view.load import Notes, RunFiles, load_run
from inboxrl.view.pages import (baseline_of, eval_name, eval_rows, step_rows, write_eval,
                                write_evals_side_by_side, write_step)
from inboxrl.view.plots import EVAL_PLOTS, TRAIN_PLOTS, write_plots
from inboxrl.view.render import PageWriter
from inboxrl.view.tokens import TokenText, find_tokenizer

VIEW_DIR = "view"
MANIFEST = "manifest.json"
FORMAT_VERSION = 2


class ViewError(RuntimeError):
    """The output directory cannot be viewed (it does not exist or is not a directory)."""


@dataclass
class ViewSettings:
    """What ``inboxrl view`` takes besides the output directory."""

    tokenizer: str | None = None  # tokenizer directory or hub id (default: found from the run)
    workers: int = 0  # processes building steps; 0 = one per CPU (at most 8), 1 = in this process
    reuse: bool = True  # reuse unchanged steps' pages from the last build


@dataclass
class BuildReport:
    index: Path
    steps: int = 0
    rollouts: int = 0
    evals: int = 0
    reused: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    kind: str  # "step" | "eval"
    step: int
    signature: str
    args: tuple


_STATE: dict[str, Any] = {}  # set before the worker processes fork: writer, tokens, note


def _stat(p: Path | None) -> list[Any]:
    try:
        st = p.stat() if p is not None else None
    except OSError:
        st = None
    return [str(p), st.st_size, st.st_mtime_ns] if st else [str(p), None, None]


def _run_job(job: Job) -> tuple[Job, int, list[str]]:
    writer, tokens, note = _STATE["writer"], _STATE["tokens"], _STATE["note"]
    fn = write_step if job.kind == "step" else write_eval
    try:
        n, lines = fn(writer, job.step, *job.args, tokens, note)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
        return job, 0, [f"{job.kind} {job.step}: not built ({type(e).__name__}: {e})"]
    return job, n, lines


def make_jobs(run: RunFiles, sig_common: list[Any]) -> list[Job]:
    jobs = []
    steps = list(run.step_files)
    cfg = run.config or {}
    rule = {"mode": cfg.get("mode"), "min_group_std": cfg.get("min_group_std")} if cfg else None
    for i, step in enumerate(steps):
        prev_step, next_step = (steps[i - 1] if i else None), (steps[i + 1] if i + 1 < len(steps) else None)
        metrics = run.train.get(step)
        sig = json.dumps([sig_common, _stat(run.step_files[step]), prev_step, next_step, metrics, rule], default=str)
        jobs.append(Job("step", step, sig, (run.step_files[step], metrics, prev_step, next_step, rule)))
    rewards, bstep, bids = baseline_of(run.evals, run.baseline, list(run.eval_traj_files))
    if not rewards and cfg.get("baseline_file"):  # a run compared with a configured baseline file
        rewards = configured_baseline(str(cfg["baseline_file"]), run.notes)
    for step in run.evals:
        path = run.eval_traj_files.get(step)
        sig = json.dumps([sig_common, _stat(path), rewards, bstep, sorted(bids)], default=str)
        jobs.append(Job("eval", step, sig, (path, rewards, bstep, bids)))
    return jobs


def configured_baseline(path: str, notes: Notes) -> dict[str, float]:
    from inboxrl.logs.eval_stats import BaselineError, load_baseline

    try:
        return load_baseline(path)
    except (BaselineError, OSError, ValueError) as e:
        notes.add(f"baseline_file {path}: not read ({e}); evals shown without a baseline")
        return {}


def _load_manifest(view_dir: Path) -> dict[str, dict[str, Any]]:
    """``{job key: {"signature", "notes"}}`` of the last build (empty when unreadable or older)."""
    try:
        doc = json.loads((view_dir / MANIFEST).read_text(encoding="utf-8"))
        if doc.get("version") != FORMAT_VERSION:
            return {}
        return {str(k): {"signature": str(v["signature"]), "notes": [str(n) for n in v["notes"]]}
                for k, v in doc["jobs"].items()}
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        return {}


def code_digest() -> str:
    """A digest of the viewer's own code and templates: pages built by other code are rebuilt."""
    h = hashlib.sha1()
    for p in sorted(Path(__file__).parent.rglob("*")):
        if p.suffix in (".py", ".html", ".css"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _key(job: Job) -> str:
    return f"{job.kind}-{job.step}"


def _page_of(job: Job) -> str:
    return f"steps/step_{job.step:04d}.html" if job.kind == "step" else f"evals/{eval_name(job.step)}.html"


def run_jobs(jobs: list[Job], workers: int) -> list[tuple[Job, int, list[str]]]:
    if workers <= 1 or len(jobs) <= 1 or "fork" not in get_all_start_methods():
        return [_run_job(j) for j in jobs]
    # fork: the workers inherit the writer and the tokenizer set in _STATE
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("fork")) as pool:
        return list(pool.map(_run_job, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def build_pages(jobs: list[Job], view_dir: Path, settings: ViewSettings, notes: Notes,
                report: BuildReport) -> dict[str, dict[str, Any]]:
    """Run the jobs whose signature changed since the last build (or whose page is gone);
    return the manifest entries of every job whose page now exists."""
    old = _load_manifest(view_dir) if settings.reuse else {}
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        prev = old.get(_key(job))
        if prev and prev["signature"] == job.signature and (view_dir / _page_of(job)).is_file():
            done[_key(job)] = prev
            notes.extend(prev["notes"])
        else:
            todo.append(job)
    report.reused = len(done)
    for job, n, lines in run_jobs(todo, settings.workers or min(os.cpu_count() or 1, 8)):
        notes.extend(lines)
        report.rollouts += n
        if n and (view_dir / _page_of(job)).is_file():
            done[_key(job)] = {"signature": job.signature, "notes": lines}
    return done


def build_view(output_dir: str | Path, settings: ViewSettings | None = None) -> BuildReport:
    """Build (or refresh) ``output_dir/view``; raises ``ViewError`` only when there is no directory."""
    settings = settings or ViewSettings()
    t0 = time.time()
    root = Path(output_dir)
    if not root.is_dir():
        raise ViewError(f"output directory not found: {root}" if not root.exists()
                        else f"not a directory: {root}")
    view_dir = root / VIEW_DIR
    run = load_run(root)
    notes = run.notes
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # quiet in forked workers
    tokenizer, source = find_tokenizer(root, run.config, settings.tokenizer)
    note = f"tokens decoded with the tokenizer of {source}" if tokenizer is not None else source
    if tokenizer is None:
        notes.add(f"token view: {source}")
    writer = PageWriter(view_dir, root)
    _STATE.update(writer=writer, tokens=TokenText(tokenizer), note=note)
    writer.copy_asset("style.css", files("inboxrl.view").joinpath("templates/style.css").read_bytes())

    jobs = make_jobs(run, [FORMAT_VERSION, code_digest(), source])
    report = BuildReport(index=view_dir / "index.html")
    done = build_pages(jobs, view_dir, settings, notes, report)
    step_pages = {j.step for j in jobs if j.kind == "step" and _key(j) in done}
    eval_pages = {j.step for j in jobs if j.kind == "eval" and _key(j) in done}
    report.steps, report.evals = len(step_pages), len(eval_pages)
    write_overview(writer, run, step_pages, eval_pages, note, notes)
    atomic_write_json(view_dir / MANIFEST, {"version": FORMAT_VERSION, "jobs": done})
    report.notes, report.seconds = list(notes.lines), time.time() - t0
    return report


def write_overview(writer: PageWriter, run: RunFiles, step_pages: set[int], eval_pages: set[int],
                   tokenizer_note: str, notes: Notes) -> None:
    """``index.html`` and ``evals.html`` (written last: they list what the build produced)."""
    write_evals_side_by_side(writer, run.evals, eval_pages, notes)
    plots_dir = writer.view_dir / "plots"
    eval_plots = write_plots(plots_dir, EVAL_PLOTS, list(run.evals.values()))
    train_plots = write_plots(plots_dir, TRAIN_PLOTS, list(run.train.values()))
    settings = [(k, v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in (run.config or {}).items()]
    writer.page("index.html", "index.html", title=f"Run {run.root.name}", notes=notes.lines, settings=settings,
                eval_plots=eval_plots, train_plots=train_plots, eval_rows=eval_rows(run.evals, eval_pages),
                step_rows=step_rows(run.train, step_pages), tokenizer_note=tokenizer_note)
