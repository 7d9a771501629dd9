"""The environment a run's rollouts use: the email store, the configured judge, the turn budget."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import Judge, make_judge
from inboxrl.email.store import EmailStore
from inboxrl.email.types import Scenario
from inboxrl.settings.sections import JudgeConfig


def make_run_judge(cfg: JudgeConfig, output_dir: str | Path) -> Judge:
    """The judge the settings ask for (the LLM judge caches under ``{output_dir}/judge_cache``)."""
    if cfg.judge == "llm":
        return make_judge("llm", base_url=cfg.judge_base_url, model=cfg.judge_model,
                          api_key_env=cfg.judge_api_key_env, cache_dir=str(Path(output_dir) / "judge_cache"))
    return make_judge("normalized")


def make_env_factory(db_path: str | Path, judge: Judge, max_turns: int) -> Callable[[Scenario], EmailTaskEnv]:
    """A fresh :class:`EmailTaskEnv` per rollout over one shared read-only store."""
    store = EmailStore(db_path)
    return lambda scenario: EmailTaskEnv(store, scenario, judge, max_turns)
