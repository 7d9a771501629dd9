"""Shared-prompt-prefix training (``SHARE_PREFIX``) vs the plain forward, side by side.

Workload: real-layout trajectories without a model: the SFT demonstrations of the embedded
inbox (reference-agent episodes rendered exactly as rollouts: system prompt + worked example +
question, then search/read/answer calls and tool results), with seeded random advantages. Both
sides run the same ``policy_update`` (GRPO: forward + loss + backward + clip + AdamW) and
``sft_update`` on the same batches of the default model (LoRA r16, bf16 where fast), alternating
plain / shared per repetition; the medians and their ratio are printed, and the log-probs of the
two paths are compared.

    python bench/shared_prefix.py [--rows 8] [--reps 3] [--token-budget 4096] [--model DIR]
"""
from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=8, help="trajectories per step (B x G of a GRPO step)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per side (after one warm-up)")
    p.add_argument("--token-budget", type=int, default=4096, help="padded tokens per micro-batch")
    p.add_argument("--model", default="default", help="model dir or 'default'")
    return p.parse_args(argv)


def workload(rows: int, renderer):
    from inboxrl.cli import SFT_SECTIONS
    from inboxrl.email.store import EmailStore
    from inboxrl.run.data import resolve_data
    from inboxrl.run.env import make_env_factory, make_run_judge
    from inboxrl.run.warm_start import settings_from_config
    from inboxrl.settings.sources import build_settings
    from inboxrl.sft.demos import collect_demonstrations

    cfg = build_settings(SFT_SECTIONS)
    data = resolve_data(cfg.data, cfg.run.seed)
    settings, _ = settings_from_config(cfg)
    settings.num_demos = rows
    judge = make_run_judge(cfg.judge, cfg.run.output_dir)
    demos = collect_demonstrations(EmailStore(data.db_path), data.train, judge, renderer,
                                   make_env_factory(data.db_path, judge, cfg.rollout.max_turns), settings).trajectories
    rng = random.Random(0)
    for t in demos:
        for turn in t.turns:
            turn.advantage = rng.uniform(-1.5, 1.5)
    return demos


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from inboxrl.grpo.forward import shared_prefix_len, trained_logprobs
    from inboxrl.grpo.batching import make_micro_batches
    from inboxrl.grpo.optim import make_optimizer
    from inboxrl.grpo.update import UpdateSettings, policy_update, sft_update
    from inboxrl.policy.hf import LoraSpec, load_model
    from inboxrl.policy.default_model import resolve_model_name
    from inboxrl.agent.chat import ChatRenderer
    from inboxrl.email.tools import TOOL_SCHEMAS

    args = parse_args(argv)
    model, tok = load_model(resolve_model_name(args.model), lora=LoraSpec(r=16, alpha=32))
    trajs = workload(args.rows, ChatRenderer(tok, TOOL_SCHEMAS))
    mbs = make_micro_batches(trajs, args.token_budget, tok.pad_token_id or 0)
    tokens = sum(t.num_tokens for t in trajs)
    shared = [shared_prefix_len(mb) for mb in mbs]
    print(f"{len(trajs)} trajectories, {tokens} tokens, {len(mbs)} micro-batches "
          f"(rows {[mb.num_rows for mb in mbs]}, shared prefix {shared} tokens)")
    with torch.no_grad():
        diffs = [(trained_logprobs(model, mb, share_prefix=True)[0]
                  - trained_logprobs(model, mb, share_prefix=False)[0]).abs().max().item() for mb in mbs]
    print(f"max |log-prob difference| shared vs plain: {max(diffs):.2e} ({next(model.parameters()).dtype})")
    state = copy.deepcopy({k: v for k, v in model.state_dict().items() if "lora" in k})
    times: dict[tuple[str, bool], list[float]] = {}
    for rep in range(args.reps + 1):
        for kind, fn in (("grpo", policy_update), ("sft", sft_update)):
            for share in (False, True):
                model.load_state_dict(state, strict=False)
                opt = make_optimizer(model, lr=1e-5)
                settings = UpdateSettings(token_budget=args.token_budget, share_prefix=share)
                took = timed(lambda: fn(model, opt, None, trajs, settings, pad_id=tok.pad_token_id or 0))
                if rep:
                    times.setdefault((kind, share), []).append(took)
    for kind in ("grpo", "sft"):
        plain, fast = statistics.median(times[(kind, False)]), statistics.median(times[(kind, True)])
        print(f"{kind} step: plain {plain:.2f}s, shared prefix {fast:.2f}s -> {plain / fast:.2f}x "
              f"({tokens / plain:.0f} vs {tokens / fast:.0f} tok/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
