"""Evaluation: the training rollout function on the fixed validation set (greedy by default).

Each eval prints the Detailed Rubric Statistics, writes ``eval_logs/eval_step_NNNN.json``
(atomically) plus the eval trajectories, and logs ``eval/*``. With several ranks the scenarios are
sharded (:func:`inboxrl.grpo.sharding.sharded_rollouts`); every rank gets all trajectories and the
same statistics, and rank 0 alone writes the files, identical to a one-rank eval.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from inboxrl.agent.rollout import RolloutRequest, RolloutSettings
from inboxrl.agent.trajectory import Trajectory, save_jsonl
from inboxrl.email.types import Scenario
from inboxrl.grpo.sharding import sharded_rollouts
from inboxrl.logs.eval_stats import eval_statistics, save_eval
from inboxrl.parallel import LOCAL, DistContext
from inboxrl.settings.sections import EvalConfig, RolloutConfig


@dataclass
class EvalResult:
    stats: dict
    trajectories: list[Trajectory]
    path: Path

    @property
    def accuracy(self) -> float:
        return float(self.stats["accuracy"] or 0.0)

    @property
    def avg_reward(self) -> float:
        """Mean reward of the judged samples (-inf when the judge failed on every one)."""
        value = self.stats["avg_reward"]
        return float(value) if value is not None else float("-inf")

    def rewards_by_scenario(self) -> dict[str, float]:
        return {t.scenario_id: t.reward for t in self.trajectories}


def eval_settings(rollout: RolloutConfig, evaluation: EvalConfig, seed: int) -> RolloutSettings:
    """Eval rollouts: the run's budget, ``eval_temperature`` (0 = greedy), no nucleus, the run's seed."""
    return RolloutSettings.from_config(rollout, temperature=evaluation.eval_temperature, top_p=1.0, seed=seed)


def evaluate(policy, scenarios: Sequence[Scenario], env_factory: Callable, settings: RolloutSettings,
             step: int, baseline: dict[str, float] | None, output_dir: str | Path,
             save: bool = True, ctx: DistContext = LOCAL) -> EvalResult:
    """Run one rollout per validation scenario (sharded over ``ctx``'s ranks) and compute/save the
    eval statistics (rank 0 saves)."""
    t0 = time.time()
    requests = [RolloutRequest(scenario=s, group_id=i, rollout_index=0) for i, s in enumerate(scenarios)]
    trajectories = sharded_rollouts(policy, requests, env_factory, settings, ctx)
    stats = eval_statistics(trajectories, step=step, eval_time=time.time() - t0, baseline_rewards=baseline)
    path = Path(output_dir) / "eval_logs" / f"eval_step_{step:04d}.json"
    if save and ctx.is_main:
        path = save_eval(output_dir, stats)
        save_jsonl(trajectories, path.with_name(f"eval_step_{step:04d}_trajectories.jsonl"))
    return EvalResult(stats=stats, trajectories=trajectories, path=path)
