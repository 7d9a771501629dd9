"""Page models of the run viewer: plain data built from trajectories and metrics rows.

The templates only lay these out. Advantages shown are the ones the loss used: a turn's
``advantage`` for a kept rollout, 0 for a rollout of a filtered group (the GRPO rules are in
docs/architecture.md and the README).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.logs.console_step import format_call, format_duration, verdict
from inboxrl.logs.metrics import group_views

TIE_TOLERANCE = 1e-9


def step_name(step: int) -> str:
    return f"step_{step:04d}"


def group_file(group_id: int) -> str:
    """The page of a group's rollouts (one panel each, anchored ``#rNN``)."""
    return f"g{group_id:03d}.html"


def rollout_anchor(rollout_index: int) -> str:
    return f"r{rollout_index:02d}"


def question_of(t: Trajectory) -> str | None:
    """The scenario's question as the model saw it: the last user message of the chat view."""
    users = [m.get("content") for m in t.messages if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users and users[-1] is not None else None


def loss_advantage(t: Trajectory, turn: Turn) -> float:
    """The advantage the loss used for the model tokens of ``turn`` (0 when filtered)."""
    return float(turn.advantage) if t.kept else 0.0


@dataclass
class Cell:
    advantage: float
    process_reward: float
    events: list[str]
    call: str


@dataclass
class HeatRow:
    rollout_index: int
    cells: list[Cell | None]
    reward: float
    process_rewards: list[float]
    finish_reason: str
    verdict: str
    kept: bool
    link: str


@dataclass
class GroupModel:
    group_id: int
    scenario_id: str
    question: str | None
    kept: bool
    reward_mean: float
    reward_std: float
    width: int
    rows: list[HeatRow]
    process_std: float = 0.0
    why_filtered: str | None = None


@dataclass
class StepModel:
    step: int
    summary: list[tuple[str, str]]
    groups: list[GroupModel]
    adv_scale: float
    prev_step: int | None
    next_step: int | None
    metrics: dict[str, Any] | None


def heat_row(t: Trajectory, width: int, link: str) -> HeatRow:
    cells: list[Cell | None] = [Cell(loss_advantage(t, turn), float(turn.process_reward), list(turn.events),
                                     format_call(turn)) for turn in t.turns]
    return HeatRow(t.rollout_index, cells + [None] * (width - len(cells)), float(t.reward),
                   [float(turn.process_reward) for turn in t.turns], t.finish_reason or "?", verdict(t),
                   t.kept, link)


def group_summary(trajs: Sequence[Trajectory], groups: Sequence[GroupModel],
                  metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The Group Summary of the console log (timings and trainable tokens from metrics.jsonl)."""
    m = metrics or {}
    kept = sum(1 for g in groups if g.kept)
    early = sum(1 for t in trajs if t.finished_early)
    total = sum(t.num_tokens for t in trajs)
    trainable = sum(t.num_model_tokens for t in trajs if t.kept)
    pct = 100.0 * trainable / total if total else 0.0
    rows = [("Total groups", f"{len(groups)}"), ("Kept", f"{kept}"),
            ("Filtered (low variance)", f"{len(groups) - kept}"),
            ("Early exits", f"{early}/{len(trajs)} finished early"),
            ("Rollout time", format_duration(m.get("rollout_time"))),
            ("Training time", format_duration(m.get("training_time"))),
            ("Total tokens", f"{total:,}"), ("Trainable tokens", f"{trainable:,} ({pct:.1f}%)")]
    if m.get("skipped"):
        rows.append(("Update", f"skipped: {m.get('skip_reason') or 'no trainable tokens'}"))
    elif "grad_norm" in m:
        rows.append(("Loss / grad norm", f"{_num(m.get('loss'))} / {_num(m.get('grad_norm'))}"))
    return rows


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def why_filtered(reward_std: float, process_std: float, rule: dict[str, Any] | None, judged: int) -> str:
    """Why GRPO left a group out of the loss, from the run's ``mode`` and ``min_group_std``."""
    if judged == 0:
        return "every rollout had a judge error"
    if not rule or rule.get("min_group_std") is None:
        return f"low variance (reward std {reward_std:.3f})"
    lo = float(rule["min_group_std"])
    cmp = lambda v: "<" if v < lo else "≥"  # noqa: E731 - stated as measured, whatever the rule said
    why = f"reward std {reward_std:.3f} {cmp(reward_std)} min_group_std {lo:g}"
    if rule.get("mode") == "masked":
        why += f" and process-reward std {process_std:.3f} {cmp(process_std)} {lo:g}"
    return why


def _std(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def step_model(step: int, trajs: Sequence[Trajectory], metrics: dict[str, Any] | None,
               prev_step: int | None, next_step: int | None, rule: dict[str, Any] | None = None) -> StepModel:
    groups = []
    for g in group_views(trajs):
        width = max((len(t.turns) for t in g.trajectories), default=0)
        page = f"../rollouts/{step_name(step)}/{group_file(g.group_id)}"
        rows = [heat_row(t, width, f"{page}#{rollout_anchor(t.rollout_index)}")
                for t in g.trajectories]
        judged = [t for t in g.trajectories if t.rubric.judge_error is None]
        r_std = _std([t.reward for t in judged])
        p_std = _std([turn.process_reward for t in judged for turn in t.turns])
        groups.append(GroupModel(g.group_id, g.scenario_id, question_of(g.trajectories[0]), g.kept,
                                 g.reward_mean, g.reward_std, width, rows, p_std,
                                 None if g.kept else why_filtered(r_std, p_std, rule, len(judged))))
    advs = [abs(c.advantage) for g in groups for r in g.rows for c in r.cells if c is not None]
    return StepModel(step, group_summary(trajs, groups, metrics), groups, max(advs + [1e-9]),
                     prev_step, next_step, metrics)


@dataclass
class TurnModel:
    index: int
    text: str
    call: str | None  # the parsed call as pretty JSON
    summary: str
    parse_error: str | None
    tool_result: str | None
    events: list[str]
    process_reward: float
    advantage: float
    num_tokens: int
    injected: bool


@dataclass
class RolloutModel:
    title: str
    anchor: str
    trajectory: Trajectory
    question: str | None
    turns: list[TurnModel]
    rubric: list[tuple[str, str]]
    extra: list[tuple[str, str]] = field(default_factory=list)
    token_html: str = ""


def turn_model(t: Trajectory, turn: Turn) -> TurnModel:
    call = None
    if turn.tool_call is not None:
        call = json.dumps(turn.tool_call.to_dict(), indent=2, ensure_ascii=False, default=str)
    return TurnModel(turn.index, turn.text, call, format_call(turn), turn.parse_error, turn.tool_result,
                     list(turn.events), float(turn.process_reward), loss_advantage(t, turn),
                     int(turn.num_tokens), bool(turn.injected))


def rollout_model(t: Trajectory, title: str, token_html: str = "") -> RolloutModel:
    rubric = [(k, json.dumps(v, ensure_ascii=False, default=str)) for k, v in t.rubric.to_dict().items()]
    extra = [("scenario", t.scenario_id), ("group", str(t.group_id)), ("rollout", str(t.rollout_index)),
             ("outcome reward", f"{t.reward:+.3f}"), ("verdict", verdict(t)),
             ("finish reason", t.finish_reason or "?"),
             ("in the loss", "yes" if t.kept else "no (group filtered or judge error)"),
             ("tokens", f"{t.num_tokens:,} ({t.num_model_tokens:,} sampled by the model)")]
    return RolloutModel(title, rollout_anchor(t.rollout_index), t, question_of(t),
                        [turn_model(t, turn) for turn in t.turns], rubric, extra, token_html)


@dataclass
class ScenarioOutcome:
    scenario_id: str
    question: str | None
    baseline_reward: float | None
    reward: float
    outcome: str  # won | lost | tie | judge error | - (no baseline reward)
    answer: str | None
    verdict: str
    link: str
    baseline_link: str | None


def outcome(reward: float, baseline: float | None, judge_error: bool) -> str:
    if judge_error:
        return "judge error"
    if baseline is None:
        return "-"
    d = reward - baseline
    return "won" if d > TIE_TOLERANCE else "lost" if d < -TIE_TOLERANCE else "tie"


def scenario_outcomes(trajs: Sequence[Trajectory], links: dict[str, str], baseline: dict[str, float],
                      baseline_links: dict[str, str]) -> list[ScenarioOutcome]:
    """Per scenario of one eval: its reward vs the baseline's (won / lost / tie)."""
    by: dict[str, list[Trajectory]] = {}
    for t in trajs:
        by.setdefault(t.scenario_id, []).append(t)
    rows = []
    for sid, ts in sorted(by.items()):
        reward = sum(t.reward for t in ts) / len(ts)
        base = baseline.get(sid)
        bad = any(t.rubric.judge_error is not None for t in ts)
        rows.append(ScenarioOutcome(sid, question_of(ts[0]), base, reward, outcome(reward, base, bad),
                                    ts[0].rubric.final_answer, verdict(ts[0]), links[sid],
                                    baseline_links.get(sid)))
    return rows


def baseline_rewards(baseline_doc: dict[str, Any] | None, step0: dict[str, Any] | None) -> dict[str, float]:
    """Per-scenario baseline rewards: ``baseline_eval.json``'s ``scenario_rewards``, else the
    step-0 eval's per-scenario rows."""
    doc = baseline_doc or {}
    try:
        if isinstance(doc.get("scenario_rewards"), dict):
            return {str(k): float(v) for k, v in doc["scenario_rewards"].items()}
        rows = (step0 or {}).get("per_scenario") or []
        by: dict[str, list[float]] = {}
        for r in rows:
            if not r.get("judge_error"):
                by.setdefault(str(r["scenario_id"]), []).append(float(r["reward"]))
        return {k: sum(v) / len(v) for k, v in by.items()}
    except (TypeError, ValueError, KeyError, AttributeError):
        return {}
