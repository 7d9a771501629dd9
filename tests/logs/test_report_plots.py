"""write_report: eval trend table, valid PNG plots, clear error without metrics."""
from __future__ import annotations

import io
import struct

import pytest
from rich.console import Console

from _logs_util import make_traj
from inboxrl.logs.eval_stats import eval_statistics, save_eval
from inboxrl.logs.metrics import MovingAverage, TrainingMetrics
from inboxrl.logs.report import ReportError, write_report
from inboxrl.logs.sinks import MetricsSinks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(out, steps=12, with_eval_files=True):
    ma = MovingAverage(5)
    with MetricsSinks(out, wandb_mode="disabled") as sinks:
        for step in range(0, steps + 1, 4):
            n_correct = min(step // 4, 3)
            trajs = [make_traj(f"v{i}", 1.2 if i < n_correct else -1.0, correct=i < n_correct,
                               attempted=True, found=i <= n_correct, read=i < n_correct,
                               unique=2, repeated=1 if i == 3 else 0, num_turns=3) for i in range(4)]
            stats = eval_statistics(trajs, step, 1.0, None if step == 0 else {f"v{i}": -1.0 for i in range(4)})
            sinks.log_eval(stats)
            if with_eval_files:
                save_eval(out, stats)
            if step == steps:
                break
            for s in range(step + 1, step + 5):
                rs = [(-1.0 + 0.15 * s + 0.3 * (j % 3)) for j in range(4)]
                t = [make_traj("a", r, rollout_index=j, correct=r > 0.5, attempted=True,
                               model_tokens=10, other_tokens=30) for j, r in enumerate(rs)]
                sinks.log_train(TrainingMetrics.from_rollouts(s, t, total_steps=steps, moving_average=ma))


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_writes_pngs_and_prints_trend(tmp_path):
    fake_run(tmp_path)
    buf = io.StringIO()
    paths = write_report(tmp_path, console=Console(file=buf, width=120))
    assert [p.name for p in paths] == ["reward.png", "accuracy.png"]
    for p in paths:
        assert p.parent == tmp_path / "plots"
        w, h = png_size(p)
        assert w > 400 and h > 300
    out = buf.getvalue()
    assert "12 training steps, 4 evals" in out
    assert "Evaluation trend" in out
    rows = [line for line in out.splitlines() if line.strip().startswith("│")]
    assert len(rows) == 4
    cells = [[c.strip() for c in r.split("│")[1:-1]] for r in rows]
    # step, accuracy, found, read, repeats, avg reward, beat rate (vs a baseline of -1.0 each)
    assert cells[0] == ["0", "0.0%", "25.0%", "0.0%", "1/9", "-1.000", "-"]  # no baseline at step 0
    assert cells[1] == ["4", "25.0%", "50.0%", "25.0%", "1/9", "-0.450", "25.0%"]
    assert cells[3] == ["12", "75.0%", "100.0%", "75.0%", "1/9", "+0.650", "75.0%"]


def test_report_falls_back_to_jsonl_evals(tmp_path):
    fake_run(tmp_path, steps=4, with_eval_files=False)
    buf = io.StringIO()
    paths = write_report(tmp_path, console=Console(file=buf, width=120))
    assert len(paths) == 2 and "2 evals" in buf.getvalue()


def test_report_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no metrics"):
        write_report(tmp_path)
    with pytest.raises(ReportError, match="not a directory"):
        write_report(tmp_path / "missing")
