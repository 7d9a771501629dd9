"""Data-parallel GRPO: the same training run on 1 process vs N processes, side by side.

Both sides run the real command (``train_grpo.py``, the same settings, seed and data) for
``--steps`` steps, ``--rounds`` times, interleaved (1, N, 1, N, ...); each run's first step is a
warm-up and is not counted:

* **1 process** with ``--threads`` intra-op threads (``OMP_NUM_THREADS``), on one GPU if there is
  one: ``python train_grpo.py ...``;
* **N processes** with ``threads / N`` threads each (CPU; on a GPU machine one GPU per process):
  ``torchrun --nproc_per_node N train_grpo.py ...``. Rollouts are sharded by group and the
  gradients are all-reduced (README, "Several processes and GPUs");
* on CPU also **1 process with ``threads / N`` threads**, the per-process reference: intra-op
  threads scale badly on small matrices and on a busy machine (a descheduled thread stalls the
  others), so the first ratio mixes that effect with data parallelism, the second does not.

Printed: steps/s of each side (from ``step_time`` in each run's ``metrics.jsonl``), their ratio,
the rollout and update parts, and the **communication share** of the N-process step: in a
separate N-process job on the same machine, the median time of the step's collectives on
buffers of the real sizes (the all-gather of one step's trajectories, read from the N-process
run, and the all-reduce of a gradient as large as the model's trainable parameters, once per
iteration), divided by the N-process step time. Groups are never filtered here
(``MIN_GROUP_STD=0``), so every step trains on every rollout.

``--fsdp`` adds a side: the N-process run with the parameters sharded (``--fsdp true``, FSDP2:
one unit per decoder layer, rollouts on the gathered weights; README, "Several processes and
GPUs"), next to the replicated (DDP) one, and their ratio.

``--model tiny`` trains a tiny random Llama (written to a temporary directory; every rollout runs
to its token budget, so the work per step is fixed) instead of the default SmolLM2-135M.

Run: ``python bench/data_parallel.py [--model default|tiny|DIR] [--nproc 2] [--threads 2]
[--steps 3] [--groups 4 --group-size 4 --max-turns 2 --max-tokens 32] [--fsdp]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_settings(args: argparse.Namespace, out: Path) -> dict[str, str]:
    return {"MODEL_NAME": args.model, "MAX_STEPS": str(args.steps), "PER_DEVICE_TRAIN_BATCH_SIZE": str(args.groups),
            "NUM_GENERATIONS": str(args.group_size), "MAX_TURNS": str(args.max_turns),
            "MAX_TOKENS": str(args.max_tokens), "MIN_GROUP_STD": "0", "EVAL_STEPS": "0",
            "RUN_BASELINE_EVAL": "false", "EVAL_DATASET_SIZE": "1", "SAVE_STEPS": "0", "WANDB_MODE": "disabled",
            "ROLLOUT_BATCH_SIZE": "0", "SEED": "7", "OUTPUT_DIR": str(out), "LEARNING_RATE": "1e-5"}


def launch(args: argparse.Namespace, nproc: int, threads: int, out: Path, fsdp: bool = False) -> list[dict]:
    """Run the training command (``fsdp``: with the parameters sharded); return its train rows
    of metrics.jsonl."""
    env = dict(os.environ, **run_settings(args, out), OMP_NUM_THREADS=str(threads), FSDP=str(fsdp).lower())
    if nproc == 1:
        cmd = [sys.executable, str(ROOT / "train_grpo.py")]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(ROOT / "train_grpo.py")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("kind", "train") == "train"]


def trainable_parameters(model: str, lora_r: int) -> int:
    from inboxrl.policy.loading import load_model, LoraSpec

    m, _ = load_model(model, dtype="fp32", device="cpu", lora=LoraSpec(r=lora_r, alpha=2 * lora_r))
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def comm_worker(trajectories: str, num_params: int, reps: int, result: str) -> None:
    """In each of N ranks: time the all-gather of this rank's share of a step's trajectories and
    the all-reduce of a ``num_params`` float32 gradient (medians of ``reps``)."""
    import torch.distributed as dist

    from inboxrl.agent.trajectory import load_jsonl
    from inboxrl.grpo.sharding import local_groups
    from inboxrl.parallel import init_from_env, shutdown

    ctx = init_from_env(timeout_s=300)
    mine = local_groups(load_jsonl(trajectories), ctx)
    grad = torch.ones(num_params, dtype=torch.float32, device=ctx.device)
    gather_t, reduce_t = [], []
    for _ in range(reps):
        ctx.barrier()
        t = time.perf_counter()
        ctx.all_gather(mine)
        gather_t.append(time.perf_counter() - t)
        ctx.barrier()
        t = time.perf_counter()
        dist.all_reduce(grad)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        reduce_t.append(time.perf_counter() - t)
    if ctx.is_main:
        Path(result).write_text(json.dumps({"gather_s": statistics.median(gather_t),
                                            "all_reduce_s": statistics.median(reduce_t)}))
    shutdown(ctx)


def measure_comm(args: argparse.Namespace, nproc: int, threads: int, run_dir: Path, work: Path) -> dict:
    step_file = sorted((run_dir / "trajectories").glob("step_*.jsonl"))[-1]
    result = work / "comm.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           __file__, "--comm-worker", str(step_file), str(trainable_parameters(args.model, args.lora_r)),
           "5", str(result)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"comm job failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def summary(timed: list[dict]) -> dict[str, float]:
    """Mean step, rollout and update times of the timed steps (each run's first step, a warm-up
    of allocations and kernel selection, is left out by the caller)."""
    mean = lambda k: statistics.fmean(r[k] for r in timed)  # noqa: E731
    return {"step_s": mean("step_time"), "rollout_s": mean("rollout_time"), "update_s": mean("training_time"),
            "steps_per_s": 1.0 / mean("step_time"), "steps": len(timed)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--comm-worker":
        comm_worker(argv[1], int(argv[2]), int(argv[3]), argv[4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--nproc", type=int, default=torch.cuda.device_count() if torch.cuda.is_available() else 2)
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (per side)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--lora-r", type=int, default=16, help="the run's LoRA rank (the default setting)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs of each side")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--fsdp", action="store_true", help="also run the N processes with --fsdp true (FSDP2)")
    args = p.parse_args(argv)
    if args.nproc < 2 or args.steps < 2 or args.rounds < 1:
        raise SystemExit("need --nproc >= 2 (on a GPU machine: 2 GPUs), --steps >= 2 (the first is a "
                         "warm-up) and --rounds >= 1")
    threads_each = max(args.threads // args.nproc, 1)
    label = args.model
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model == "tiny":
            from inboxrl.policy.tiny import make_tiny_model

            model, tokenizer = make_tiny_model(seed=0)
            model.save_pretrained(work / "tiny")
            tokenizer.save_pretrained(work / "tiny")
            args.model = str(work / "tiny")
        one_rows, many_rows, single_rows, fsdp_rows = [], [], [], []
        for r in range(args.rounds):  # interleaved, so that a change of machine load hits every side
            one_rows += launch(args, 1, args.threads, work / f"one{r}")[1:]
            many_rows += launch(args, args.nproc, threads_each, work / f"many{r}")[1:]
            if args.fsdp:
                fsdp_rows += launch(args, args.nproc, threads_each, work / f"fsdp{r}", fsdp=True)[1:]
            if threads_each < args.threads:
                single_rows += launch(args, 1, threads_each, work / f"single{r}")[1:]
        comm = measure_comm(args, args.nproc, threads_each, work / "many0", work)
    report(args, label, threads_each, one_rows, many_rows, single_rows, fsdp_rows, comm)
    return 0


def report(args: argparse.Namespace, label: str, threads_each: int, one_rows: list[dict], many_rows: list[dict],
           single_rows: list[dict], fsdp_rows: list[dict], comm: dict) -> None:
    """Print the sides (steps/s, step / rollout / update seconds), their ratios and the
    communication share of the N-process (DDP) step."""
    one, many = summary(one_rows), summary(many_rows)
    comm_s = comm["gather_s"] + comm["all_reduce_s"]
    where = "GPU" if torch.cuda.is_available() else "CPU"
    print(f"model {label}, {args.groups} groups x {args.group_size} rollouts, {args.max_turns} turns x "
          f"{args.max_tokens} tokens, {one['steps']} timed steps per side ({args.rounds} interleaved runs), {where}")
    print(f"{'':36s} {'steps/s':>8s} {'step s':>8s} {'rollout s':>10s} {'update s':>9s}")
    sides = [(f"1 process x {args.threads} threads", one), (f"{args.nproc} processes x {threads_each} thread(s)", many)]
    if single_rows:
        sides.append((f"1 process x {threads_each} thread(s)", summary(single_rows)))
    if fsdp_rows:
        sides.append((f"{args.nproc} processes x {threads_each} thread(s) FSDP", summary(fsdp_rows)))
    for name, r in sides:
        print(f"{name:36s} {r['steps_per_s']:8.4f} {r['step_s']:8.2f} {r['rollout_s']:10.2f} {r['update_s']:9.2f}")
    print(f"ratio ({args.nproc} processes / 1 process, steps/s): {many['steps_per_s'] / one['steps_per_s']:.2f}x")
    if single_rows:
        print(f"ratio ({args.nproc} processes x {threads_each} / 1 process x {threads_each} thread(s), steps/s): "
              f"{many['steps_per_s'] / sides[2][1]['steps_per_s']:.2f}x")
    if fsdp_rows:
        fsdp = sides[-1][1]
        print(f"ratio (FSDP / DDP, {args.nproc} processes, steps/s): {fsdp['steps_per_s'] / many['steps_per_s']:.2f}x "
              f"(update {fsdp['update_s'] / many['update_s']:.2f}x, rollout {fsdp['rollout_s'] / many['rollout_s']:.2f}x "
              "the DDP time)")
    print(f"communication per step: all-gather of the trajectories {comm['gather_s'] * 1e3:.1f} ms + gradient "
          f"all-reduce {comm['all_reduce_s'] * 1e3:.1f} ms = {comm_s / many['step_s']:.2%} of the "
          f"{args.nproc}-process step")


if __name__ == "__main__":
    sys.exit(main())
