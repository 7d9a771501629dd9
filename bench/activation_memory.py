"""Activation checkpointing: peak memory and time of one GRPO update, with and without, side by side.

    python bench/activation_memory.py [--model DIR] [--rollouts 8] [--prefix-len 640]
        [--rest-len 800] [--trained 150] [--token-budget 4096]

The workload has the shape of a default ART-E step: ``--rollouts`` trajectories that share a
``--prefix-len``-token system prompt and worked example, then ``--rest-len`` tokens each (question,
model turns, tool results) of which ``--trained`` are model tokens; LoRA r16, micro-batches of at
most ``--token-budget`` padded tokens. Each setting runs in a fresh process (so each peak RSS is
its own): load the model, one untimed update (allocator warm-up), then ``--steps`` timed updates.
Prints peak RSS, the growth of RSS over the loaded model, and seconds per update, and the ratios.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="model directory or 'default' (SmolLM2-135M)")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--prefix-len", type=int, default=640)
    ap.add_argument("--rest-len", type=int, default=800)
    ap.add_argument("--trained", type=int, default=150)
    ap.add_argument("--token-budget", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--child", choices=["plain", "checkpointing"], default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def trajectories(args, vocab: int):
    import torch

    from inboxrl.agent.trajectory import Trajectory, Turn
    from inboxrl.grpo.advantages import assign_advantages

    g = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(10, vocab, (n,), generator=g).tolist()  # noqa: E731
    prefix, out = ids(args.prefix_len), []
    for i in range(args.rollouts):
        t = Trajectory(scenario_id="s0", group_id=0, rollout_index=i, reward=float(i % 3) - 1.0,
                       turns=[Turn(0)])
        t.append(prefix, "system")
        t.append(ids(args.rest_len - args.trained), "tool")
        t.append(ids(args.trained), "model", [-1.0] * args.trained, turn=0)
        out.append(t)
    assign_advantages(out, "rollout")
    return out


def child(args) -> dict:
    import torch

    from inboxrl.grpo.optim import make_optimizer
    from inboxrl.grpo.update import UpdateSettings, policy_update
    from inboxrl.policy.loading import load_model, LoraSpec

    model, tok = load_model(args.model, dtype="fp32", device="cpu", lora=LoraSpec(r=16, alpha=32),
                            gradient_checkpointing=args.child == "checkpointing")
    loaded = _rss_gib()
    opt = make_optimizer(model, lr=1e-6)
    trajs = trajectories(args, model.config.vocab_size)
    settings = UpdateSettings(token_budget=args.token_budget, max_grad_norm=1.0)
    run = lambda: policy_update(model, opt, None, trajs, settings, pad_id=tok.pad_token_id)  # noqa: E731
    stats = run()
    t = time.perf_counter()
    for _ in range(args.steps):
        run()
    return {"setting": args.child, "peak_rss_gib": _rss_gib(), "loaded_rss_gib": loaded,
            "s_per_update": (time.perf_counter() - t) / args.steps, "micro_batches": stats.num_micro_batches,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = {}
    for setting in ("plain", "checkpointing"):
        cmd = [sys.executable, __file__, "--child", setting] + (argv if argv is not None else sys.argv[1:])
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        rows[setting] = r
        print(f"{setting:>14}: peak RSS {r['peak_rss_gib']:.2f} GiB (+{r['peak_rss_gib'] - r['loaded_rss_gib']:.2f} "
              f"over the loaded model), {r['s_per_update']:.1f} s per update, {r['micro_batches']} micro-batches")
    p, c = rows["plain"], rows["checkpointing"]
    grow = lambda r: r["peak_rss_gib"] - r["loaded_rss_gib"]  # noqa: E731
    print(f"checkpointing / plain: peak RSS {c['peak_rss_gib'] / p['peak_rss_gib']:.2f}x, "
          f"growth {grow(c) / max(grow(p), 1e-9):.2f}x, time {c['s_per_update'] / p['s_per_update']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
