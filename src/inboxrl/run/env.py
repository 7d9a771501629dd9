"""The environment a run's rollouts use: the email store, the configured judge, the turn budget."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import Judge, make_judge
from inboxrl.email.judge_pool import ConcurrentJudge
from inboxrl.email.store import EmailStore
from inboxrl.email.types import Scenario
from inboxrl.settings.sections import JudgeConfig


def make_run_judge(cfg: JudgeConfig, output_dir: str | Path) -> Judge:
    """The judge the settings ask for. The LLM judge (cached under ``{output_dir}/judge_cache``)
    runs on a thread pool, off the decoding path, within the step budget (docs/robustness.md)."""
    if cfg.judge == "llm":
        llm = make_judge("llm", base_url=cfg.judge_base_url, model=cfg.judge_model,
                         api_key_env=cfg.judge_api_key_env, cache_dir=str(Path(output_dir) / "judge_cache"),
                         timeout=cfg.judge_timeout, retries=cfg.judge_retries)
        return ConcurrentJudge(llm, workers=cfg.judge_concurrency, budget_s=cfg.judge_step_budget)
    return make_judge("normalized")


def make_env_factory(db_path: str | Path, judge: Judge, max_turns: int) -> Callable[[Scenario], EmailTaskEnv]:
    """A fresh :class:`EmailTaskEnv` per rollout over one shared read-only store (a concurrent
    judge's verdicts are settled by the rollout function, :func:`inboxrl.agent.rollout.run_rollouts`)."""
    store = EmailStore(db_path)
    return lambda scenario: EmailTaskEnv(store, scenario, judge, max_turns, defer_verdict=True)
