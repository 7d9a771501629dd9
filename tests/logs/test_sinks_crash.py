"""Metric files after a crash: a run that starts from step s rewrites metrics.jsonl and
eval_metrics.jsonl to exactly what step s had written (partial lines repaired, later rows and
repeats dropped), the wandb run id is kept for a resume, and only rank 0 writes."""
from __future__ import annotations

import json

import pytest

from _fault_util import KILLED, run_forked
from _logs_util import read_wandb_history
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


def _offline_entries(root):
    return sorted(p.name for p in (root / "wandb").iterdir() if "offline-run-" in p.name)


@pytest.mark.timeout(240)
def test_a_killed_then_resumed_offline_wandb_run_has_each_step_once(tmp_path, monkeypatch):
    """The killed run logged steps 1-3 to its offline run; the resume from step 2 leaves one
    offline run of the id (nothing hidden either) whose history has each step once: steps <= 2
    with the killed run's values (replayed from metrics.jsonl), 3 and 4 with the resumed run's."""
    wandb = pytest.importorskip("wandb")
    # an earlier test's wandb service would be shared with the forked child and would keep the
    # killed child's run id "in use"; a real killed run takes its service down with it
    wandb.teardown()
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")

    def first_run():
        sinks = MetricsSinks(tmp_path / "run", wandb_project="t", wandb_mode="offline", start_step=0)
        sinks.log_eval(eval_stats(0))
        for step in (1, 2, 3):
            sinks.log_train(step_metrics(step))
        sinks.log_train(step_metrics(4))  # killed half-way through this row

    assert run_forked(first_run, fault="metrics.partial_line:5") == KILLED
    killed = _offline_entries(tmp_path / "wandb")
    assert len(killed) == 1
    killed_inode = (tmp_path / "wandb" / "wandb" / killed[0]).stat().st_ino
    with MetricsSinks(tmp_path / "run", wandb_project="t", wandb_mode="offline", start_step=2,
                      last_eval_step=0) as s:
        assert killed[0].endswith(f"-{s.run.id}")  # the same run id
        again = step_metrics(3)
        again.loss = 9.0  # the resumed run's step 3 differs from the killed run's
        s.log_train(again)
        s.log_train(step_metrics(4))
        s.log_eval(eval_stats(4))
    left = _offline_entries(tmp_path / "wandb")
    # a new directory (its name repeats the killed one's when both started in the same second);
    # the killed run's is gone
    assert len(left) == 1, left
    new_dir = tmp_path / "wandb" / "wandb" / left[0]
    assert new_dir.stat().st_ino != killed_inode
    records = list(new_dir.glob("run-*.wandb"))
    assert len(records) == 1, records
    history = read_wandb_history(records[0])
    assert [h["_step"] for h in history] == [0, 1, 2, 3, 4]
    assert [h.get("train/loss") for h in history] == [None, 0.5, 0.25, 9.0, 0.125]
    assert history[0]["eval/accuracy"] == 0.5 and history[4]["eval/accuracy"] == 0.5
    assert "eval/accuracy" not in history[3]


def test_only_rank_0_writes(tmp_path):
    sinks = MetricsSinks(tmp_path / "run", wandb_mode="offline", main_process=False, start_step=0)
    sinks.log_train(step_metrics(1))
    sinks.log_eval(eval_stats(1))
    sinks.close()
    assert sinks.run is None and not (tmp_path / "run").exists()


class _FakeWandb:
    """Records ``wandb.init`` calls and logs; ``rewind=False``: the server refuses ``resume_from``."""

    def __init__(self, rewind):
        self.rewind, self.inits, self.logged = rewind, [], []

    def init(self, **kwargs):
        self.inits.append(kwargs)
        if "resume_from" in kwargs and not self.rewind:
            raise RuntimeError("rewind is not enabled for this entity")
        fake = self

        class Run:
            id, step = kwargs.get("id") or kwargs["resume_from"].split("?")[0], 3

            def log(self, values, step):
                fake.logged.append((step, sorted(values)[:1]))

            def finish(self):
                pass
        return Run()


@pytest.mark.parametrize("rewind", [True, False])
def test_an_online_resume_rewinds_the_run_to_the_step_or_says_it_cannot(tmp_path, monkeypatch, rewind):
    with MetricsSinks(tmp_path, wandb_mode="disabled", start_step=0) as sinks:
        sinks.log_eval(eval_stats(0))
        for step in (1, 2, 3):
            sinks.log_train(step_metrics(step))
        sinks.log_eval(eval_stats(2))
    run_id = wandb_run_id(tmp_path, resume=True)
    fake = _FakeWandb(rewind)
    monkeypatch.setitem(__import__("sys").modules, "wandb", fake)
    notices = []
    sinks = MetricsSinks(tmp_path, wandb_project="t", wandb_mode="online", start_step=2, notice=notices.append)
    sinks.log_train(step_metrics(3))
    sinks.close()
    if rewind:  # rewound to step 2: its rows are logged again, then the resumed run's steps
        assert [i.get("resume_from") for i in fake.inits] == [f"{run_id}?_step=2"]
        assert fake.logged == [(2, ["train/accuracy"]), (2, ["eval/accuracy"]), (3, ["train/accuracy"])]
    else:  # reopened: wandb has step 3 of the killed run already (run.step 3); nothing is rewritten
        assert [sorted(i)[:1] for i in fake.inits] == [["config"], ["config"]] and fake.inits[1]["id"] == run_id
        assert fake.logged == [(3, ["train/accuracy"])]
        assert any("could not rewind run" in n and "keep the earlier run's values" in n for n in notices)
