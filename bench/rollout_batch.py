"""Rollout decode batch size (``ROLLOUT_BATCH_SIZE``): the same rollouts decoded all together
vs in batches of a few, side by side in one run.

Each rollout decodes in its own slot of one KV cache (its own length, no holes) and a finished
rollout's slot is refilled from the queue; a wider batch puts more rows into every matrix
product and holds more cache. Both sides run the same greedy eval rollouts (the validation scenarios of the embedded
inbox, ``run_rollouts`` with the eval's own settings, ``eval_settings``), on the same model, and must produce the
same trajectories up to float rounding; the wall time of each side, the ratio and how many
trajectories are token-identical are printed.

    python bench/rollout_batch.py --model ~/.cache/inboxrl/warm_start/<key> [--rollouts 16] \\
        [--sizes 0,8] [--max-turns 4] [--max-new-tokens 96]

``--model`` takes a model directory (a warm start is the representative one: an untrained model
ends most rollouts at its first malformed call) or ``default``; ``--sizes``: decode batch
sizes to compare, 0 = all rollouts at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default", help="model dir or 'default'")
    p.add_argument("--rollouts", type=int, default=16, help="validation scenarios rolled out (greedy)")
    p.add_argument("--sizes", default="0,8", help="decode batch sizes to compare (0 = all at once)")
    p.add_argument("--max-turns", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=96)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from inboxrl.agent.rollout import RolloutRequest, run_rollouts
    from inboxrl.cli import EVAL_SECTIONS
    from inboxrl.grpo.evaluation import eval_settings
    from inboxrl.run.data import resolve_data
    from inboxrl.run.env import make_env_factory, make_run_judge
    from inboxrl.run.model import load_policy
    from inboxrl.settings.sources import build_settings

    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cfg = build_settings(EVAL_SECTIONS, cli={
        "eval_dataset_size": args.rollouts, "max_turns": args.max_turns, "max_tokens": args.max_new_tokens,
        **({"model_name": args.model} if args.model == "default" else {"init_from": args.model})})
    data = resolve_data(cfg.data, cfg.run.seed)
    policy = load_policy(cfg.model, lora=False)
    judge = make_run_judge(cfg.judge, cfg.run.output_dir)
    env_factory = make_env_factory(data.db_path, judge, cfg.rollout.max_turns)
    requests = [RolloutRequest(scenario=s, group_id=i, rollout_index=0) for i, s in enumerate(data.validation)]
    print(f"{len(requests)} greedy rollouts, model {args.model} ({policy.model.dtype}), "
          f"max {args.max_turns} turns x {args.max_new_tokens} tokens")
    results = {}
    for size in sizes:
        settings = dataclasses.replace(eval_settings(cfg.rollout, cfg.eval, cfg.run.seed), progress=False, batch_size=size or None)
        start = time.perf_counter()
        trajs = run_rollouts(policy, requests, env_factory, settings)
        took = time.perf_counter() - start
        tokens = sum(t.num_model_tokens for t in trajs)
        results[size] = (took, trajs)
        print(f"batch {size or len(requests):>3}: {took:7.1f}s  ({took / len(trajs):.1f}s per rollout, "
              f"{tokens / took:.1f} generated tok/s)")
    base_size = sizes[0]
    base_time, base_trajs = results[base_size]
    for size in sizes[1:]:
        took, trajs = results[size]
        same = sum(a.token_ids == b.token_ids for a, b in zip(base_trajs, trajs))
        print(f"batch {size or len(requests)} vs {base_size or len(requests)}: {base_time / took:.2f}x faster; "
              f"{same}/{len(trajs)} trajectories token-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
