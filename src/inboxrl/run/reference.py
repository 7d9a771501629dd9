"""``inboxrl eval-reference``: the scripted reference agent over the run's validation scenarios
(the configured data, or the embedded synthetic inbox), with the run's turn budget and seed."""
from __future__ import annotations

import argparse

from inboxrl.email.judge_pool import close_judge
from inboxrl.reference.evaluate import evaluate_reference_agent, print_summary
from inboxrl.run.data import resolve_data
from inboxrl.run.env import make_run_judge
from inboxrl.settings.sections import Settings


def run_eval_reference(args: argparse.Namespace, settings: Settings) -> int:
    """Run the reference agent (``args.agent_mode``) and print the summary line. Returns 0."""
    run, max_turns = settings.run, settings.rollout.max_turns
    data = resolve_data(settings.data, run.seed, need_train=False)
    mode = getattr(args, "agent_mode", "read")
    judge = make_run_judge(settings.judge, run.output_dir)
    try:
        episodes = evaluate_reference_agent(data.db_path, data.validation, judge, max_turns, mode, run.seed)
    finally:
        close_judge(judge)
    print(f"data: {data.source}; {len(data.validation)} validation scenarios; max_turns {max_turns}")
    print_summary(episodes, mode)
    return 0
