"""MetricsSinks: metrics.jsonl rows, wandb offline read-back, no wandb installed, disabled mode."""
from __future__ import annotations

import sys

import pytest

from _logs_util import make_traj, read_jsonl, read_wandb_history_keys
from inboxrl.logs.eval_stats import eval_statistics
from inboxrl.logs.metrics import TrainingMetrics
from inboxrl.logs.sinks import MetricsSinks, read_metrics, resolve_wandb_mode


def step_metrics(step: int) -> TrainingMetrics:
    t = [make_traj("a", 1.0, correct=True, model_tokens=10, other_tokens=10),
         make_traj("a", -1.0, rollout_index=1, attempted=True, model_tokens=10, other_tokens=10)]
    return TrainingMetrics.from_rollouts(step, t, total_steps=2, loss=0.5 / step, grad_norm=1.0)


def eval_stats(step: int) -> dict:
    return eval_statistics([make_traj("a", 1.0, correct=True), make_traj("b", 0.0, idk=True)],
                           step, 1.5, {"a": 0.0, "b": 0.0})


def test_jsonl_rows_flushed_and_read_back(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    sinks = MetricsSinks(tmp_path, config={"lr": 1e-5})
    assert sinks.wandb_mode == "disabled" and sinks.run is None
    sinks.log_eval(eval_stats(0))
    sinks.log_train(step_metrics(1))
    rows = read_jsonl(tmp_path / "metrics.jsonl")  # readable before close: flushed
    evals = read_jsonl(tmp_path / "eval_metrics.jsonl")
    assert [r["kind"] for r in rows] == ["train"] and [r["kind"] for r in evals] == ["eval"]
    assert rows[0]["loss"] == 0.5 and rows[0]["accuracy"] == 0.5 and rows[0]["step"] == 1
    assert evals[0]["beat_rate"] == 0.5 and "per_scenario" not in evals[0]
    sinks.close()
    sinks.close()  # idempotent
    # a resumed run appends; readers keep the last row per step
    with MetricsSinks(tmp_path, wandb_mode="disabled") as s2:
        s2.log_train(step_metrics(1))
        s2.log_train(step_metrics(2))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # a crash mid-write
    train, evals = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in train] == [1, 2] and [r["step"] for r in evals] == [0]


def test_without_wandb_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    notices = []
    sinks = MetricsSinks(tmp_path, wandb_project="p", wandb_mode="offline", notice=notices.append)
    assert sinks.run is None
    assert len(notices) == 1 and "wandb is not installed" in notices[0]
    sinks.log_train(step_metrics(1))
    sinks.log_eval(eval_stats(1))
    sinks.close()
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 1
    assert len(read_jsonl(tmp_path / "eval_metrics.jsonl")) == 1


def test_mode_resolution(monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_wandb_mode(None, None) == "disabled"
    assert resolve_wandb_mode(None, "proj") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode(None, None) == "offline"
    assert resolve_wandb_mode("disabled", "proj") == "disabled"
    with pytest.raises(ValueError, match="wandb mode"):
        resolve_wandb_mode("sometimes", None)


@pytest.mark.timeout(120)
def test_wandb_offline_run_records_train_and_eval_keys(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    wdir = tmp_path / "wandb_root"
    wdir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wdir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    sinks = MetricsSinks(tmp_path / "run", wandb_project="inboxrl-test", wandb_name="t",
                         config={"group_size": 4})
    assert sinks.run is not None
    sinks.log_eval(eval_stats(0))
    sinks.log_train(step_metrics(1))
    sinks.log_train(step_metrics(2))
    sinks.log_eval(eval_stats(2))
    for step in range(3, 31):  # enough rows to span several 32 KiB blocks of the run file
        sinks.log_train(step_metrics(step))
    sinks.close()
    files = list(wdir.rglob("run-*.wandb"))
    assert len(files) == 1, files
    keys = read_wandb_history_keys(files[0])
    merged = set().union(*keys)
    for k in ("train/loss", "train/avg_reward", "train/accuracy", "train/groups_kept",
              "train/trainable_token_ratio", "eval/accuracy", "eval/beat_rate", "eval/found_email",
              "eval/total_searches", "eval/eval_time"):
        assert k in merged, k
    assert "train/step" not in merged
    assert files[0].stat().st_size > 32768  # crosses a block boundary
    # 31 history rows: step 0 (eval), steps 1..30 (train; step 2 has train + eval merged)
    assert len(keys) == 31
    assert all("train/loss" in ks for ks in keys[1:])
    assert any("train/loss" in ks and "eval/accuracy" in ks for ks in keys)
