"""Metric files after a crash: a run that starts from step s rewrites metrics.jsonl and
eval_metrics.jsonl to exactly what step s had written (partial lines repaired, later rows and
repeats dropped), the wandb run id is kept for a resume, and only rank 0 writes."""
from __future__ import annotations

import json

import pytest

from _fault_util import KILLED, run_forked
from test_sinks_metrics import eval_stats, step_metrics
from inboxrl.logs.sinks import MetricsSinks, parse_row, read_metrics, rewind_metrics, wandb_run_id


def _lines(path):
    return path.read_text().splitlines()


def test_a_kill_mid_row_then_a_resume_keeps_each_step_once(tmp_path):
    def first_run():
        sinks = MetricsSinks(tmp_path, wandb_mode="disabled", start_step=0)
        sinks.log_eval(eval_stats(0))
        for step in (1, 2, 3):
            sinks.log_train(step_metrics(step))
        sinks.log_train(step_metrics(4))  # killed half-way through this row

    assert run_forked(first_run, fault="metrics.partial_line:5") == KILLED  # the 5th row
    text = (tmp_path / "metrics.jsonl").read_text()
    assert not text.endswith("\n") and len(_lines(tmp_path / "metrics.jsonl")) == 4
    # resume from the checkpoint of step 2 (its last eval: step 0)
    notices = []
    with MetricsSinks(tmp_path, wandb_mode="disabled", start_step=2, last_eval_step=0,
                      notice=notices.append) as sinks:
        for step in (3, 4):
            sinks.log_train(step_metrics(step))
        sinks.log_eval(eval_stats(4))
    assert notices and "dropped 2 rows" in notices[0]
    rows = [json.loads(line) for line in _lines(tmp_path / "metrics.jsonl")]  # every line parses
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[3] == json.loads(json.dumps({"kind": "train", **step_metrics(4).to_flat()}))
    assert [json.loads(x)["step"] for x in _lines(tmp_path / "eval_metrics.jsonl")] == [0, 4]


def test_rewind_keeps_the_evals_the_checkpoint_had_done(tmp_path):
    with MetricsSinks(tmp_path, wandb_mode="disabled") as sinks:
        for step in (0, 2, 4):
            sinks.log_eval(eval_stats(step))
        for step in (1, 2, 3, 4):
            sinks.log_train(step_metrics(step))
    # the checkpoint of step 4 was written before its final eval
    assert rewind_metrics(tmp_path, step=4, last_eval_step=2) == 1
    train, evals = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in train] == [1, 2, 3, 4] and [r["step"] for r in evals] == [0, 2]
    before = (tmp_path / "metrics.jsonl").stat().st_mtime_ns
    assert rewind_metrics(tmp_path, step=4, last_eval_step=2) == 0  # already clean: left alone
    assert (tmp_path / "metrics.jsonl").stat().st_mtime_ns == before
    # a fresh start in the same directory starts the files over
    assert rewind_metrics(tmp_path, step=0, last_eval_step=-1) == 6
    assert read_metrics(tmp_path / "metrics.jsonl") == ([], [])


def test_rows_written_onto_a_partial_line_by_older_builds_are_recovered(tmp_path):
    good = json.dumps({"kind": "train", "step": 3, "loss": 0.25})
    assert parse_row('{"kind": "train", "step": 2, "lo' + good) == json.loads(good)
    assert parse_row('{"kind": "train", "step": 2, "lo') is None and parse_row("") is None
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"kind": "train", "step": 2, "lo' + good + "\n")
    train, _ = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in train] == [1, 3]


def test_the_wandb_run_id_is_kept_for_a_resume_only(tmp_path):
    first = wandb_run_id(tmp_path, resume=False)
    assert wandb_run_id(tmp_path, resume=True) == first
    second = wandb_run_id(tmp_path, resume=False)  # a fresh run is a new wandb run
    assert second != first and wandb_run_id(tmp_path, resume=True) == second


@pytest.mark.timeout(180)
def test_a_resumed_wandb_run_reopens_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    with MetricsSinks(tmp_path / "run", wandb_project="t", wandb_mode="offline", start_step=0) as s:
        run_id = s.run.id
        s.log_train(step_metrics(1))
    with MetricsSinks(tmp_path / "run", wandb_project="t", wandb_mode="offline", start_step=1) as s:
        assert s.run.id == run_id
        s.log_train(step_metrics(2))
    dirs = sorted(p.name for p in (tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(dirs) == 2 and all(run_id in d for d in dirs)


def test_only_rank_0_writes(tmp_path):
    sinks = MetricsSinks(tmp_path / "run", wandb_mode="offline", main_process=False, start_step=0)
    sinks.log_train(step_metrics(1))
    sinks.log_eval(eval_stats(1))
    sinks.close()
    assert sinks.run is None and not (tmp_path / "run").exists()
