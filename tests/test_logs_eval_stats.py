"""eval_statistics: every DESIGN.md §6 key, hand-computed; baselines; atomic save; eval/* names."""
from __future__ import annotations

import json
import os

import pytest

from _logs_util import make_traj
from inboxrl.logs import eval_stats as es
from inboxrl.logs.metrics import eval_statistics as alias

DESIGN_KEYS = [
    "step", "accuracy", "correct_answers", "total_samples", "attempted_answer", "avg_reward",
    "median_reward", "std_reward", "min_reward", "max_reward", "found_correct_email",
    "read_correct_email", "total_repeated_searches", "total_unique_searches", "total_searches",
    "avg_turns_correct", "avg_turns_idk", "avg_search_attempts", "num_idk", "eval_time",
    "beat_rate", "tie_rate", "judge_errors", "per_scenario",
]


def handmade():
    return [
        make_traj("s1", 1.3, correct=True, found=True, read=True, unique=2, repeated=1, num_turns=4),
        make_traj("s2", -0.9, attempted=True, found=True, unique=1, num_turns=3, answer="wrong one"),
        make_traj("s3", 0.0, idk=True, unique=3, repeated=2, num_turns=6),
        make_traj("s4", 1.35, correct=True, found=True, read=True, unique=1, num_turns=2),
        make_traj("s5", 0.0, attempted=True, unique=1, num_turns=3, judge_error="timeout"),
        make_traj("s6", 0.1, idk=True, found=True, num_turns=2, unique=0),
    ]


def test_every_key_hand_computed():
    baseline = {"s1": 1.0, "s2": -0.9, "s3": 0.5, "s4": 1.35, "s5": -1.0}  # s6 absent
    s = es.eval_statistics(handmade(), step=7, eval_time=12.5, baseline_rewards=baseline)
    for k in DESIGN_KEYS:
        assert k in s, k
    assert s["step"] == 7 and s["total_samples"] == 6
    assert s["correct_answers"] == 2
    assert s["judge_errors"] == 1 and s["judged_samples"] == 5
    assert s["accuracy"] == pytest.approx(2 / 5)  # the judge error is not a model failure
    assert s["attempted_answer"] == pytest.approx(4 / 6) and s["num_attempted"] == 4
    assert s["found_correct_email"] == pytest.approx(4 / 6)
    assert s["read_correct_email"] == pytest.approx(2 / 6)
    assert s["total_unique_searches"] == 8
    assert s["total_repeated_searches"] == 3
    assert s["total_searches"] == 11
    assert s["avg_search_attempts"] == pytest.approx(11 / 6)
    assert s["avg_turns_correct"] == pytest.approx(3.0)
    assert s["avg_turns_idk"] == pytest.approx(4.0)
    assert s["num_idk"] == 2
    # reward statistics over the 5 judged samples (s5's reward is the judge-error placeholder)
    assert s["avg_reward"] == pytest.approx(1.85 / 5)
    assert s["median_reward"] == pytest.approx(0.1)
    assert s["std_reward"] == pytest.approx(0.854166, abs=1e-6)
    assert s["min_reward"] == -0.9 and s["max_reward"] == 1.35
    assert s["eval_time"] == 12.5
    # compared: s1 beat, s2 tie, s3 lose, s4 tie (s5 judge error, s6 not in baseline)
    assert s["baseline_compared"] == 4
    assert s["beat_rate"] == pytest.approx(0.25)
    assert s["tie_rate"] == pytest.approx(0.5)
    assert s["loss_rate"] == pytest.approx(0.25)
    rows = {r["scenario_id"]: r for r in s["per_scenario"]}
    assert rows["s2"] == {"scenario_id": "s2", "rollout_index": 0, "reward": -0.9, "correct": False,
                          "answer": "wrong one", "num_turns": 3, "finish_reason": "answered",
                          "judge_error": None}
    assert [r["scenario_id"] for r in s["per_scenario"]] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    json.dumps(s)  # JSON-ready
    assert alias(handmade(), 7, 12.5, baseline)["beat_rate"] == pytest.approx(0.25)


def test_no_baseline_and_no_such_samples_give_none():
    trajs = [make_traj("a", -1.0, attempted=True, num_turns=2),
             make_traj("b", 0.0, num_turns=5, finish_reason="max_turns")]
    s = es.eval_statistics(trajs, step=0, eval_time=1.0)
    assert s["beat_rate"] is None and s["tie_rate"] is None
    assert s["avg_turns_correct"] is None and s["avg_turns_idk"] is None
    assert s["accuracy"] == 0.0
    assert s["finished_early"] == 1
    w = es.eval_to_wandb(s)
    assert "eval/beat_rate" not in w and "eval/avg_turns_idk" not in w
    assert es.eval_statistics(trajs, 0, 1.0, {"zzz": 1.0})["beat_rate"] is None  # nothing compared


def test_several_samples_per_scenario_compare_their_mean():
    trajs = [make_traj("a", 1.0, rollout_index=0), make_traj("a", -0.5, rollout_index=1)]
    s = es.eval_statistics(trajs, 1, 0.0, {"a": 0.2})  # mean 0.25 > 0.2
    assert s["beat_rate"] == 1.0 and s["tie_rate"] == 0.0


def test_empty_raises():
    with pytest.raises(ValueError, match="at least one"):
        es.eval_statistics([], 0, 0.0)


def test_eval_to_wandb_names():
    s = es.eval_statistics(handmade(), 3, 2.0, {"s1": 0.0})
    w = es.eval_to_wandb(s)
    expected = {"eval/accuracy", "eval/avg_reward", "eval/attempted_answer", "eval/found_email",
                "eval/read_email", "eval/total_repeated_searches", "eval/total_unique_searches",
                "eval/total_searches", "eval/avg_turns_correct", "eval/avg_turns_idk",
                "eval/avg_search_attempts", "eval/num_idk", "eval/beat_rate", "eval/eval_time"}
    assert expected <= set(w)
    assert w["eval/found_email"] == pytest.approx(4 / 6) and w["eval/beat_rate"] == 1.0


def test_save_eval_atomic_and_baseline_roundtrip(tmp_path, monkeypatch):
    s = es.eval_statistics(handmade(), 12, 1.0)
    p = es.save_eval(tmp_path, s)
    assert p == tmp_path / "eval_logs" / "eval_step_0012.json"
    assert json.loads(p.read_text())["total_searches"] == 11
    assert [f.name for f in p.parent.iterdir()] == ["eval_step_0012.json"]  # no temp files left

    # a crash while writing leaves the previous file intact
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    s2 = dict(s, accuracy=0.99)
    with pytest.raises(OSError):
        es.save_eval(tmp_path, s2)
    monkeypatch.undo()
    assert json.loads(p.read_text())["accuracy"] == pytest.approx(0.4)
    assert [f.name for f in p.parent.iterdir()] == ["eval_step_0012.json"]

    b = es.save_baseline(tmp_path, s)
    assert b.name == "baseline_eval.json"
    rewards = es.load_baseline(b)
    assert rewards == {"s1": 1.3, "s2": -0.9, "s3": 0.0, "s4": 1.35, "s6": 0.1}  # s5: judge error
    assert es.load_baseline(p) == rewards  # an eval_step file works too


def test_load_baseline_user_formats(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"a": 1, "b": -0.5}))
    assert es.load_baseline(tmp_path / "d.json") == {"a": 1.0, "b": -0.5}
    (tmp_path / "l.json").write_text(json.dumps([{"id": "a", "reward": 1}, {"scenario_id": "a", "reward": 0}]))
    assert es.load_baseline(tmp_path / "l.json") == {"a": 0.5}
    (tmp_path / "r.jsonl").write_text('{"scenario_id": "x", "reward": 0.3}\n\n{"scenario_id": "y", "reward": 1}\n')
    assert es.load_baseline(tmp_path / "r.jsonl") == {"x": 0.3, "y": 1.0}
    (tmp_path / "bad.json").write_text(json.dumps({"a": "high"}))
    with pytest.raises(es.BaselineError, match="bad.json"):
        es.load_baseline(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps([{"scenario_id": "a"}]))
    with pytest.raises(es.BaselineError, match="no 'reward'"):
        es.load_baseline(tmp_path / "bad2.json")
    (tmp_path / "bad3.txt").write_text("not json at all")
    with pytest.raises(es.BaselineError, match="neither JSON"):
        es.load_baseline(tmp_path / "bad3.txt")
    with pytest.raises(es.BaselineError, match="not found"):
        es.load_baseline(tmp_path / "missing.json")


def test_protocol_rates_are_part_of_every_eval():
    from inboxrl.agent.trajectory import Turn
    from inboxrl.email.types import ToolCall
    from inboxrl.logs.console_eval import rubric_rows

    search = ToolCall("search_emails", {"keywords": ["x"]})
    answer = ToolCall("return_final_answer", {"answer": "a", "sources": []})
    trajs = handmade()[:3]
    trajs[0].turns = [Turn(0, tool_call=search), Turn(1, tool_call=answer)]
    trajs[1].turns = [Turn(0, parse_error="unparseable: no JSON"), Turn(1, tool_call=search)]
    trajs[2].turns = [Turn(0, tool_call=answer, parse_error="bad_arguments: sources")]
    s = es.eval_statistics(trajs, step=0, eval_time=1.0)
    assert s["valid_call_rate"] == pytest.approx(3 / 5)  # 5 turns, 2 invalid
    assert s["first_search_rate"] == pytest.approx(1 / 3)
    wb = es.eval_to_wandb(s)
    assert wb["eval/valid_call_rate"] == s["valid_call_rate"]
    assert wb["eval/first_search_rate"] == s["first_search_rate"]
    rows = dict(rubric_rows(s))
    assert rows["Valid tool calls (of turns)"] == "60.0%" and rows["Search as first call"] == "33.3%"
