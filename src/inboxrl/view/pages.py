"""Writing the viewer's pages: one step (its page and its rollouts' pages), one eval, the
overview and the side-by-side evals. Each function takes the data it shows and a writer."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

from inboxrl.agent.trajectory import SOURCES, Trajectory
from inboxrl.logs.console_eval import rubric_rows
from inboxrl.view.load import Notes, load_trajectories
from inboxrl.view.models import (baseline_rewards, group_file, rollout_model, scenario_outcomes,
                                 step_model, step_name)
from inboxrl.view.render import PageWriter
from inboxrl.view.tokens import TokenText, token_view_html


def eval_name(step: int) -> str:
    return f"eval_{step:04d}"


def eval_rollout_file(scenario_id: str) -> str:
    """The file of a scenario's eval transcripts, the same name in every eval (so the
    baseline's can be linked)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scenario_id)[:60]
    digest = hashlib.sha1(scenario_id.encode("utf-8")).hexdigest()[:6]
    return f"{safe}-{digest}.html"


def write_rollouts(writer: PageWriter, rel: str, trajs: Sequence[Trajectory], tokens: TokenText, title: str,
                   back_link: str, back_label: str, tokenizer_note: str) -> None:
    """One page of rollouts (a group, or a scenario's eval transcripts), one panel each."""
    models = [rollout_model(t, f"Rollout {t.rollout_index}", token_view_html(t, tokens)) for t in trajs]
    writer.page(rel, "rollouts.html", title=title, rollouts=models, back_link=back_link, back_label=back_label,
                sources=SOURCES, tokenizer_note=tokenizer_note)


def _by(trajs: Sequence[Trajectory], key) -> dict[Any, list[Trajectory]]:
    out: dict[Any, list[Trajectory]] = {}
    for t in trajs:
        out.setdefault(key(t), []).append(t)
    return {k: sorted(v, key=lambda t: t.rollout_index) for k, v in out.items()}


def write_step(writer: PageWriter, step: int, path: Path, metrics: dict[str, Any] | None,
               prev_step: int | None, next_step: int | None, rule: dict[str, Any] | None, tokens: TokenText,
               tokenizer_note: str) -> tuple[int, list[str]]:
    """``steps/step_NNNN.html`` and ``rollouts/step_NNNN/gGGG.html``; returns
    (rollouts written, notes)."""
    notes = Notes()
    label = f"trajectories/{path.name}"
    trajs = load_trajectories(path, notes, label)
    if not trajs:
        notes.add(f"{label}: no readable trajectories, step page not written")
        return 0, notes.lines
    model = step_model(step, trajs, metrics, prev_step, next_step, rule)
    writer.page(f"steps/{step_name(step)}.html", "step.html", title=f"Step {step}", m=model)
    for gid, members in _by(trajs, lambda t: t.group_id).items():
        write_rollouts(writer, f"rollouts/{step_name(step)}/{group_file(gid)}", members, tokens,
                       f"Step {step} · group {gid} · {members[0].scenario_id}",
                       f"../../steps/{step_name(step)}.html#group-{gid}", f"step {step}, group {gid}",
                       tokenizer_note)
    return len(trajs), notes.lines


def write_eval(writer: PageWriter, step: int, path: Path | None, baseline: dict[str, float],
               baseline_step: int | None, baseline_ids: set[str], tokens: TokenText,
               tokenizer_note: str) -> tuple[int, list[str]]:
    """``evals/eval_NNNN.html`` (per-scenario outcome vs the baseline) and its transcripts."""
    notes = Notes()
    if path is None:
        notes.add(f"eval at step {step}: no eval_step_{step:04d}_trajectories.jsonl, scenarios not shown")
        return 0, notes.lines
    trajs = load_trajectories(path, notes, f"eval_logs/{path.name}")
    if not trajs:
        return 0, notes.lines
    by_scenario = _by(trajs, lambda t: t.scenario_id)
    links = {sid: f"../rollouts/{eval_name(step)}/{eval_rollout_file(sid)}" for sid in by_scenario}
    base_links = {}
    if baseline_step is not None:
        base_links = {sid: f"../rollouts/{eval_name(baseline_step)}/{eval_rollout_file(sid)}"
                      for sid in baseline_ids}
    is_baseline = step == baseline_step
    rows = scenario_outcomes(trajs, links, {} if is_baseline else baseline, {} if is_baseline else base_links)
    counts = {k: sum(r.outcome == k for r in rows) for k in ("won", "lost", "tie")}
    writer.page(f"evals/{eval_name(step)}.html", "eval.html", title=f"Eval at step {step}", rows=rows,
                counts=counts, has_baseline=bool(baseline), is_baseline=is_baseline)
    for sid, members in by_scenario.items():
        write_rollouts(writer, f"rollouts/{eval_name(step)}/{eval_rollout_file(sid)}", members, tokens,
                       f"Eval at step {step} · {sid}", f"../../evals/{eval_name(step)}.html",
                       f"eval at step {step}", tokenizer_note)
    return len(trajs), notes.lines


def baseline_of(evals: dict[int, dict[str, Any]], baseline_doc: dict[str, Any] | None,
                eval_traj_steps: Sequence[int]) -> tuple[dict[str, float], int | None, set[str]]:
    """(baseline rewards by scenario, the eval step whose transcripts are the baseline's, their ids)."""
    step0 = evals.get(0)
    rewards = baseline_rewards(baseline_doc, step0)
    bstep = baseline_doc.get("step", 0) if isinstance(baseline_doc, dict) else (0 if step0 else None)
    try:
        bstep = int(bstep) if bstep is not None else None
    except (TypeError, ValueError):
        bstep = None
    if bstep is None or bstep not in eval_traj_steps:
        return rewards, None, set()
    rows = (evals.get(bstep) or {}).get("per_scenario") or []
    ids = {str(r.get("scenario_id")) for r in rows if isinstance(r, dict)} or set(rewards)
    return rewards, bstep, ids


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "-"


def _f(v: Any, fmt: str) -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "-"


def step_rows(train: dict[int, dict[str, Any]], step_pages: set[int]) -> list[dict[str, Any]]:
    rows = []
    for step in sorted(set(train) | step_pages):
        m = train.get(step, {})
        rows.append({"step": step, "link": f"steps/{step_name(step)}.html" if step in step_pages else None,
                     "reward": _f(m.get("avg_reward"), "{:+.3f}"), "accuracy": _pct(m.get("accuracy")),
                     "groups": f"{m.get('groups_kept', '-')} / {m.get('groups_filtered', '-')}",
                     "early": str(m.get("num_early_exit", "-")),
                     "tokens": f"{_f(m.get('total_tokens'), '{:,}')} ({_f(m.get('trainable_tokens'), '{:,}')})",
                     "grad_norm": "skipped" if m.get("skipped") else _f(m.get("grad_norm"), "{:.4f}"),
                     "time": f"{_f(m.get('rollout_time'), '{:.1f}')}s + {_f(m.get('training_time'), '{:.1f}')}s"})
    return rows


def eval_rows(evals: dict[int, dict[str, Any]], eval_pages: set[int]) -> list[dict[str, Any]]:
    return [{"step": s, "accuracy": _pct(e.get("accuracy")), "found": _pct(e.get("found_correct_email")),
             "read": _pct(e.get("read_correct_email")), "valid": _pct(e.get("valid_call_rate")),
             "reward": _f(e.get("avg_reward"), "{:+.3f}"), "beat": _pct(e.get("beat_rate")),
             "link": f"evals/{eval_name(s)}.html" if s in eval_pages else None}
            for s, e in evals.items()]


def write_evals_side_by_side(writer: PageWriter, evals: dict[int, dict[str, Any]], eval_pages: set[int],
                             notes: Notes) -> None:
    """``evals.html``: the Detailed Rubric Statistics of every eval, one column each."""
    columns, labels = [], []
    for step, stats in evals.items():
        try:
            rows = rubric_rows(stats)
        except (KeyError, TypeError, ValueError):
            notes.add(f"eval at step {step}: incomplete statistics, left out of the side-by-side table")
            continue
        for label, _ in rows:
            if label not in labels:
                labels.append(label)
        columns.append({"step": step, "cells": dict(rows),
                        "link": f"evals/{eval_name(step)}.html" if step in eval_pages else None})
    writer.page("evals.html", "evals.html", title="Evals side by side", columns=columns, labels=labels)
