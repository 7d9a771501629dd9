"""beat_rate is the same whether the baseline was computed in this process or reloaded after a
restart: one per-scenario reward (judge-error scenarios left out) everywhere."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from _logs_util import make_traj
from inboxrl.grpo.evaluation import EvalResult
from inboxrl.grpo.state import TrainerState
from inboxrl.grpo.trainer import GRPOTrainer
from inboxrl.logs.console import ConsoleLog
from inboxrl.logs.eval_stats import eval_statistics, load_baseline, save_eval, scenario_rewards
from inboxrl.parallel import LOCAL
from inboxrl.settings.sections import EvalConfig, LoopConfig


def _trainer(tmp_path, result, run_baseline_eval: bool):
    settings = SimpleNamespace(eval=EvalConfig(), loop=LoopConfig(run_baseline_eval=run_baseline_eval))
    return SimpleNamespace(settings=settings, state=TrainerState(), output_dir=tmp_path,
                           run_eval=lambda step: result, note_eval=lambda step, r: False, console=ConsoleLog(),
                           ctx=LOCAL)


def test_beat_rate_is_the_same_after_a_restart(tmp_path):
    step0 = [make_traj("s1", 0.5), make_traj("s2", -1.0, judge_error="judge timed out"), make_traj("s3", 0.0)]
    stats = eval_statistics(step0, 0, 1.0)
    result = EvalResult(stats, step0, save_eval(tmp_path, stats))
    first = _trainer(tmp_path, result, run_baseline_eval=True)
    GRPOTrainer.baseline_eval(first)  # evaluates, keeps the baseline, writes baseline_eval.json
    restarted = _trainer(tmp_path, None, run_baseline_eval=False)
    GRPOTrainer.baseline_eval(restarted)  # a restarted run reloads it
    assert first.state.baseline == restarted.state.baseline == {"s1": 0.5, "s3": 0.0}
    assert load_baseline(result.path) == first.state.baseline  # --baseline-file an eval JSON: the same

    later = [make_traj("s1", 0.7), make_traj("s2", 0.2), make_traj("s3", -0.1)]
    a = eval_statistics(later, 2, 1.0, first.state.baseline)
    b = eval_statistics(later, 2, 1.0, restarted.state.baseline)
    assert (a["beat_rate"], a["loss_rate"], a["baseline_compared"]) == (0.5, 0.5, 2)
    assert (b["beat_rate"], b["loss_rate"], b["baseline_compared"]) == (0.5, 0.5, 2)


def test_a_scenario_with_any_judge_error_has_no_reward():
    rows = [{"scenario_id": "a", "reward": 1.0}, {"scenario_id": "a", "reward": 0.0},
            {"scenario_id": "b", "reward": 2.0}, {"scenario_id": "b", "reward": 0.0, "judge_error": "x"}]
    assert scenario_rewards(rows) == {"a": pytest.approx(0.5)}
