"""Evaluation statistics (DESIGN.md §6): the ``eval_step_NNNN.json`` dict, baselines, ``eval/*``.

Definitions (N = ``total_samples`` = number of evaluated rollouts):

* ``accuracy`` = ``correct_answers`` / judged samples, where judged samples = N − ``judge_errors``
  (a judge failure is reported apart and never scored as a model failure); ``None`` when no
  sample was judged.
* ``attempted_answer``, ``found_correct_email``, ``read_correct_email``: shares (0..1) of N
  (their counts are ``num_attempted``, ``num_found``, ``num_read``).
* ``total_unique_searches`` / ``total_repeated_searches``: sums of the rubric counters;
  ``total_searches`` = unique + repeated; ``avg_search_attempts`` = ``total_searches`` / N.
* ``avg_turns_correct`` / ``avg_turns_idk``: mean ``num_turns`` of correct / "I don't know"
  samples; ``None`` when there are no such samples. ``num_idk`` counts the latter.
* Reward statistics (``avg_reward``, ``median_reward``, ``std_reward``, ``min_reward``,
  ``max_reward``) use the population std over the judged samples (a judge-error sample's reward
  is a placeholder); ``None`` when no sample was judged.
* ``beat_rate`` / ``tie_rate`` / ``loss_rate``: shares of the compared scenarios whose reward
  (mean over that scenario's samples) is above / equal to (|Δ| ≤ 1e-9) / below the baseline's.
  Compared scenarios are those present in the baseline with no judge error in this eval;
  ``baseline_compared`` counts them. All three are ``None`` when there is no baseline or no
  scenario could be compared.
* ``valid_call_rate``: share of all turns whose text parsed to a known tool with valid
  arguments; ``first_search_rate``: share of rollouts whose first call is a valid search
  (:mod:`inboxrl.logs.protocol`).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from inboxrl.agent.trajectory import Trajectory
from inboxrl.logs.metrics import judged_reward_stats
from inboxrl.logs.protocol import protocol_stats
from inboxrl.utils.atomic import atomic_write_json

TIE_TOLERANCE = 1e-9
EVAL_DIR = "eval_logs"
BASELINE_FILE = "baseline_eval.json"

# eval_step json key -> eval/* name (DESIGN.md §6)
WANDB_KEYS = {
    "accuracy": "eval/accuracy",
    "avg_reward": "eval/avg_reward",
    "attempted_answer": "eval/attempted_answer",
    "found_correct_email": "eval/found_email",
    "read_correct_email": "eval/read_email",
    "total_repeated_searches": "eval/total_repeated_searches",
    "total_unique_searches": "eval/total_unique_searches",
    "total_searches": "eval/total_searches",
    "avg_turns_correct": "eval/avg_turns_correct",
    "avg_turns_idk": "eval/avg_turns_idk",
    "avg_search_attempts": "eval/avg_search_attempts",
    "num_idk": "eval/num_idk",
    "beat_rate": "eval/beat_rate",
    "eval_time": "eval/eval_time",
    "tie_rate": "eval/tie_rate",
    "judge_errors": "eval/judge_errors",
    "valid_call_rate": "eval/valid_call_rate",
    "first_search_rate": "eval/first_search_rate",
}


class BaselineError(ValueError):
    """A baseline file that cannot be read as per-scenario rewards."""


def _mean_or_none(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def scenario_rewards(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Mean outcome reward per scenario id."""
    by: dict[str, list[float]] = {}
    for t in trajectories:
        by.setdefault(t.scenario_id, []).append(float(t.reward))
    return {sid: statistics.fmean(rs) for sid, rs in by.items()}


def compare_to_baseline(trajectories: Sequence[Trajectory],
                        baseline: dict[str, float] | None) -> dict[str, Any]:
    """``beat_rate``, ``tie_rate``, ``loss_rate`` and ``baseline_compared`` (see module doc)."""
    none = {"beat_rate": None, "tie_rate": None, "loss_rate": None, "baseline_compared": 0}
    if not baseline:
        return none
    bad = {t.scenario_id for t in trajectories if t.rubric.judge_error is not None}
    ours = {sid: r for sid, r in scenario_rewards(trajectories).items()
            if sid in baseline and sid not in bad}
    if not ours:
        return none
    diffs = [r - float(baseline[sid]) for sid, r in ours.items()]
    n = len(diffs)
    return {"beat_rate": sum(d > TIE_TOLERANCE for d in diffs) / n,
            "tie_rate": sum(abs(d) <= TIE_TOLERANCE for d in diffs) / n,
            "loss_rate": sum(d < -TIE_TOLERANCE for d in diffs) / n,
            "baseline_compared": n}


def _per_scenario(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    rows = [{"scenario_id": t.scenario_id, "rollout_index": t.rollout_index,
             "reward": float(t.reward), "correct": bool(t.rubric.answer_correct),
             "answer": t.rubric.final_answer, "num_turns": t.rubric.num_turns,
             "finish_reason": t.finish_reason, "judge_error": t.rubric.judge_error}
            for t in trajectories]
    return sorted(rows, key=lambda r: (r["scenario_id"], r["rollout_index"]))


def eval_statistics(trajectories: Sequence[Trajectory], step: int, eval_time: float,
                    baseline_rewards: dict[str, float] | None = None) -> dict[str, Any]:
    """Every ``eval_step_NNNN.json`` key of DESIGN.md §6 (definitions in the module docstring).

    Raises ``ValueError`` when ``trajectories`` is empty.
    """
    if not trajectories:
        raise ValueError("eval_statistics needs at least one trajectory")
    n = len(trajectories)
    rubrics = [t.rubric for t in trajectories]
    judged = [r for r in rubrics if r.judge_error is None]
    correct = sum(r.answer_correct for r in judged)
    unique = sum(r.num_unique_searches for r in rubrics)
    repeated = sum(r.num_repeated_searches for r in rubrics)
    rs = judged_reward_stats(trajectories)
    num_attempted = sum(r.attempted_answer for r in rubrics)
    num_found = sum(r.found_reference for r in rubrics)
    num_read = sum(r.read_reference for r in rubrics)
    stats: dict[str, Any] = {
        "step": int(step),
        "accuracy": correct / len(judged) if judged else None,
        "correct_answers": correct,
        "total_samples": n,
        "judged_samples": len(judged),
        "attempted_answer": num_attempted / n,
        "num_attempted": num_attempted,
        **{k: (v if rs.count else None) for k, v in (
            ("avg_reward", rs.mean), ("median_reward", rs.median), ("std_reward", rs.std),
            ("min_reward", rs.min), ("max_reward", rs.max))},
        "found_correct_email": num_found / n, "num_found": num_found,
        "read_correct_email": num_read / n, "num_read": num_read,
        "total_repeated_searches": repeated,
        "total_unique_searches": unique,
        "total_searches": unique + repeated,
        "avg_turns_correct": _mean_or_none([r.num_turns for r in judged if r.answer_correct]),
        "avg_turns_idk": _mean_or_none([r.num_turns for r in rubrics if r.returned_idk]),
        "avg_search_attempts": (unique + repeated) / n,
        "num_idk": sum(r.returned_idk for r in rubrics),
        "finished_early": sum(t.finished_early for t in trajectories),
        "judge_errors": n - len(judged),
        "eval_time": float(eval_time),
    }
    proto = protocol_stats(trajectories)
    stats["valid_call_rate"], stats["first_search_rate"] = proto.valid_call_rate, proto.first_search_rate
    stats.update(compare_to_baseline(trajectories, baseline_rewards))
    stats["per_scenario"] = _per_scenario(trajectories)
    return stats


def eval_path(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / EVAL_DIR / f"eval_step_{int(step):04d}.json"


def save_eval(output_dir: str | Path, stats: dict[str, Any]) -> Path:
    """Write ``{output_dir}/eval_logs/eval_step_NNNN.json`` atomically; return its path."""
    return atomic_write_json(eval_path(output_dir, stats["step"]), stats)


def save_baseline(output_dir: str | Path, stats: dict[str, Any]) -> Path:
    """Write ``eval_logs/baseline_eval.json``: the stats plus ``scenario_rewards`` (id -> mean
    reward over the judged samples; scenarios with a judge error are left out)."""
    rows = stats.get("per_scenario") or []
    bad = {r["scenario_id"] for r in rows if r.get("judge_error")}
    by: dict[str, list[float]] = {}
    for r in rows:
        if r["scenario_id"] not in bad:
            by.setdefault(r["scenario_id"], []).append(float(r["reward"]))
    doc = dict(stats)
    doc["scenario_rewards"] = {sid: statistics.fmean(v) for sid, v in sorted(by.items())}
    return atomic_write_json(Path(output_dir) / EVAL_DIR / BASELINE_FILE, doc)


def _rows_to_rewards(rows: list[Any], path: Path) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "reward" not in row:
            raise BaselineError(f"{path}: entry {i} has no 'reward'")
        sid = row.get("scenario_id", row.get("id"))
        if sid is None:
            raise BaselineError(f"{path}: entry {i} has no 'scenario_id'")
        if row.get("judge_error"):
            continue
        by.setdefault(str(sid), []).append(float(row["reward"]))
    return {sid: statistics.fmean(v) for sid, v in by.items()}


def load_baseline(path: str | Path) -> dict[str, float]:
    """Per-scenario baseline rewards from any of these files:

    * our ``baseline_eval.json`` (its ``scenario_rewards``) or any ``eval_step_NNNN.json``
      (its ``per_scenario`` rows, mean per scenario, judge errors left out);
    * a JSON object ``{scenario_id: reward}``;
    * a JSON list, or JSON lines, of ``{"scenario_id" (or "id"): ..., "reward": ...}``.

    Raises ``BaselineError`` with the file name when the file fits none of these.
    """
    path = Path(path)
    if not path.is_file():
        raise BaselineError(f"baseline file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise BaselineError(f"{path}: neither JSON nor JSON lines ({e})") from None
    try:
        if isinstance(doc, dict) and isinstance(doc.get("scenario_rewards"), dict):
            return {str(k): float(v) for k, v in doc["scenario_rewards"].items()}
        if isinstance(doc, dict) and isinstance(doc.get("per_scenario"), list):
            return _rows_to_rewards(doc["per_scenario"], path)
        if isinstance(doc, dict):
            return {str(k): float(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return _rows_to_rewards(doc, path)
    except (TypeError, ValueError) as e:
        if isinstance(e, BaselineError):
            raise
        raise BaselineError(f"{path}: rewards must be numbers ({e})") from None
    raise BaselineError(f"{path}: expected an object or a list of scenario rewards")


def eval_to_wandb(stats: dict[str, Any]) -> dict[str, float]:
    """The ``eval/*`` values of DESIGN.md §6 (plus tie_rate, judge_errors); None values skipped."""
    return {name: stats[key] for key, name in WANDB_KEYS.items() if stats.get(key) is not None}
