"""Evaluation: the training rollout function on the fixed validation set (greedy by default).

Each eval prints the Detailed Rubric Statistics, writes ``eval_logs/eval_step_NNNN.json``
(atomically) plus the eval trajectories, and logs ``eval/*``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.agent.trajectory import Trajectory, save_jsonl
from inboxrl.config import TrainConfig
from inboxrl.email.types import Scenario
from inboxrl.logs.eval_stats import eval_statistics, save_eval


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


def eval_settings(cfg: TrainConfig) -> RolloutSettings:
    greedy = cfg.eval_temperature == 0
    return RolloutSettings(max_turns=cfg.max_turns, max_new_tokens=cfg.max_tokens,
                           max_context_tokens=cfg.max_context_tokens,
                           temperature=cfg.eval_temperature if not greedy else 1.0, top_p=1.0,
                           greedy=greedy, seed=cfg.seed, check_template=cfg.check_template,
                           batch_size=cfg.rollout_batch_size or None)


def evaluate(policy, scenarios: Sequence[Scenario], env_factory: Callable, cfg: TrainConfig, step: int,
             baseline: dict[str, float] | None, output_dir: str | Path, save: bool = True) -> EvalResult:
    """Run one rollout per validation scenario and compute/save the eval statistics."""
    t0 = time.time()
    requests = [RolloutRequest(scenario=s, group_id=i, rollout_index=0) for i, s in enumerate(scenarios)]
    trajectories = run_rollouts(policy, requests, env_factory, eval_settings(cfg))
    stats = eval_statistics(trajectories, step=step, eval_time=time.time() - t0, baseline_rewards=baseline)
    path = Path(output_dir) / "eval_logs" / f"eval_step_{step:04d}.json"
    if save:
        path = save_eval(output_dir, stats)
        save_jsonl(trajectories, path.with_name(f"eval_step_{step:04d}_trajectories.jsonl"))
    return EvalResult(stats=stats, trajectories=trajectories, path=path)
