"""``inboxrl eval``: evaluate a local model or an OpenAI-compatible endpoint on the validation set.

Uses the training rollout function and writes ``{output_dir}/eval_logs/eval_step_0000.json``
(or compares with ``--baseline-file``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from inboxrl.config import TrainConfig


def run_eval_command(args: argparse.Namespace, cfg: TrainConfig) -> int:
    from inboxrl.grpo.evaluation import evaluate
    from inboxrl.logs.console import ConsoleLog
    from inboxrl.logs.eval_stats import load_baseline
    from inboxrl.run.data import resolve_data
    from inboxrl.run.train import make_env_factory

    console = ConsoleLog(verbose=cfg.verbose)
    data = resolve_data(cfg, need_train=False)
    if args.api_base_url:
        from inboxrl.policy.openai_api import OpenAIChatPolicy

        policy = OpenAIChatPolicy(base_url=args.api_base_url, model=args.api_model or cfg.model_name,
                                  api_key_env=args.api_key_env)
        console.info(f"Evaluating {policy.model} at {args.api_base_url}")
    else:
        from inboxrl.run.model import load_policy

        cfg.use_lora = False
        policy = load_policy(cfg)
        console.info(f"Evaluating {cfg.init_from or cfg.model_name}")
    baseline = load_baseline(cfg.baseline_file) if cfg.baseline_file else None
    result = evaluate(policy, data.validation, make_env_factory(data.db_path, cfg), cfg, step=0,
                      baseline=baseline, output_dir=Path(cfg.output_dir))
    console.eval_report(result.stats, result.path)
    return 0
