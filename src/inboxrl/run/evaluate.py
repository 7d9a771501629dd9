"""``inboxrl eval``: evaluate a local model or an OpenAI-compatible endpoint on the validation set.

Uses the training rollout function and writes ``{output_dir}/eval_logs/eval_step_0000.json``
(or compares with ``--baseline-file``). A local model is evaluated as it is: no adapter is added.
It samples on the engine ``rollout_engine`` selects, as training does
(:func:`inboxrl.run.vllm.select_rollout_policy`): ``vllm`` loads the model directory into vLLM
and pushes the evaluated weights to it before the first rollout.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from inboxrl.email.judge_pool import close_judge
from inboxrl.grpo.evaluation import eval_settings, evaluate
from inboxrl.logs.console import ConsoleLog
from inboxrl.logs.eval_stats import load_baseline
from inboxrl.run.data import resolve_data
from inboxrl.run.checks import usable_output_dir
from inboxrl.run.env import make_env_factory, make_run_judge
from inboxrl.run.model import load_policy
from inboxrl.run.vllm import select_rollout_policy
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import Settings


def _policy(args: argparse.Namespace, settings: Settings, console: ConsoleLog, out: Path) -> Any:
    if args.api_base_url:
        if settings.rollout.rollout_engine != "hf":
            raise ConfigError("--api-base-url evaluates the endpoint's own sampler: it takes no rollout_engine "
                              f"(got {settings.rollout.rollout_engine!r}; leave ROLLOUT_ENGINE unset or hf)")
        from inboxrl.policy.openai_api import OpenAIChatPolicy

        policy = OpenAIChatPolicy(base_url=args.api_base_url, model=args.api_model or settings.model.model_name,
                                  api_key_env=args.api_key_env)
        console.info(f"Evaluating {policy.model} at {args.api_base_url}")
        return policy
    policy = load_policy(settings.model, lora=False)
    console.info(f"Evaluating {settings.model.init_from or settings.model.model_name}")
    rollout_policy = select_rollout_policy(settings, policy, out, console.info)
    if rollout_policy is None:
        return policy
    rollout_policy.vllm.start(policy.model, step=0)
    return rollout_policy


def run_eval_command(args: argparse.Namespace, settings: Settings) -> int:
    run, out = settings.run, usable_output_dir(settings.run.output_dir)
    console = ConsoleLog(verbose=run.verbose)
    data = resolve_data(settings.data, run.seed, need_train=False)
    policy = _policy(args, settings, console, out)
    baseline = load_baseline(settings.eval.baseline_file) if settings.eval.baseline_file else None
    judge = make_run_judge(settings.judge, out)
    try:
        result = evaluate(policy, data.validation, make_env_factory(data.db_path, judge, settings.rollout.max_turns),
                          eval_settings(settings.rollout, settings.eval, run.seed), step=0, baseline=baseline,
                          output_dir=out)
    finally:  # a concurrent judge's threads stop (also on an error or Ctrl-C)
        close_judge(judge)
    console.eval_report(result.stats, result.path)
    return 0
