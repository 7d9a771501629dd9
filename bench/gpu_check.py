"""GPU check (CUDA + vLLM): the same seeded rollouts through the transformers engine and the vLLM
engine, side by side in one run, then one GRPO step with ROLLOUT_ENGINE=vllm.

    python bench/gpu_check.py [--model default] [--rollouts 16] [--max-turns 4] [--max-new-tokens 128]
        [--skip-train-step]

Prints generated tokens/s of each engine and ``ratio vllm/hf = X.XX``; the sampler/trainer
mismatch of each engine's tokens against one trainer forward (mismatch_kl, probs_corr,
max_logprob_gap); then runs ``inboxrl train --max-steps 1`` with ``ROLLOUT_ENGINE=vllm`` (tiny
budget) as a subprocess and prints its train/mismatch_kl and step time. Without CUDA or vLLM it
prints why and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rollouts(policy, reqs, env_factory, settings):
    from inboxrl.agent.rollout import run_rollouts

    start = time.perf_counter()
    trajs = run_rollouts(policy, reqs, env_factory, settings)
    seconds = time.perf_counter() - start
    return trajs, sum(t.num_model_tokens for t in trajs) / seconds, seconds


def describe(name, trajs, tps, seconds, model):
    from inboxrl.grpo.mismatch import measure_mismatch

    st, gaps = measure_mismatch(model, trajs)
    print(f"{name}: {sum(t.num_model_tokens for t in trajs)} tokens in {seconds:.1f}s = {tps:.1f} tok/s; "
          f"mismatch vs trainer: mismatch_kl={st.mismatch_kl:.5f} probs_corr={st.probs_corr:.5f} "
          f"max_logprob_gap={st.max_logprob_gap:.4f} mean|gap|={float(gaps.abs().mean()):.4f}")


def train_step(model_dir: str) -> int:
    """One GRPO step with ROLLOUT_ENGINE=vllm as a user runs it; its train/* line."""
    out = Path(tempfile.mkdtemp(prefix="inboxrl_gpu_check_"))
    env = dict(os.environ, ROLLOUT_ENGINE="vllm", WANDB_MODE="disabled", RECOMPUTE_OLD_LOGPROBS="true")
    cmd = [sys.executable, "-m", "inboxrl.cli", "train", "--model-name", model_dir, "--max-steps", "1",
           "--eval-steps", "0", "--run-baseline-eval", "false", "--output-dir", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(f"GRPO step with ROLLOUT_ENGINE=vllm: exit {proc.returncode} in {time.perf_counter() - start:.1f}s")
    if proc.returncode != 0:
        print(proc.stderr[-4000:])
        return proc.returncode
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if any(k.startswith("train/") for k in r)][-1]
    keys = ("train/mismatch_kl", "train/probs_corr", "train/max_logprob_gap", "train/rollout_time",
            "train/step_time")
    print("  " + " ".join(f"{k}={train.get(k)}" for k in keys))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--rollouts", type=int, default=16)
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--skip-train-step", action="store_true")
    args = ap.parse_args()
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
        print("gpu_check needs CUDA and vLLM (pip install 'inboxrl[vllm]'): not run", file=sys.stderr)
        return 2
    from inboxrl.agent.chat import ChatRenderer
    from inboxrl.agent.rollout import RolloutRequest, RolloutSettings
    from inboxrl.agent.vllm_backends import ColocatedBackend, VLLMPolicy, VLLMSampler, VLLMSettings
    from inboxrl.email.tools import TOOL_SCHEMAS
    from inboxrl.policy.default_model import resolve_model_name
    from inboxrl.policy.hf import HFPolicy, load_model
    from inboxrl.run.env import make_env_factory, make_run_judge
    from inboxrl.run.data import resolve_data
    from inboxrl.settings.sources import build_settings

    model_dir = str(resolve_model_name(args.model))
    settings = build_settings(env={})
    data = resolve_data(settings.data, 0)
    env_factory = make_env_factory(data.db_path, make_run_judge(settings.judge, Path(tempfile.mkdtemp())),
                                   args.max_turns)
    model, tok = load_model(model_dir, dtype="bf16", device="cuda")
    renderer = ChatRenderer(tok, TOOL_SCHEMAS)
    rs = RolloutSettings(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, max_context_tokens=4096,
                         seed=0, progress=False)
    reqs = [RolloutRequest(sc, i // 4, i % 4) for i, sc in enumerate((data.train * 16)[: args.rollouts])]
    hf = rollouts(HFPolicy(model, tok, renderer=renderer), reqs, env_factory, rs)
    backend = ColocatedBackend(model_dir, VLLMSettings(gpu_memory_utilization=0.3, sleep=False), 4096, 0, None)
    vllm_policy = VLLMPolicy(VLLMSampler(backend), tok, renderer)
    rollouts(vllm_policy, reqs[:2], env_factory, rs)  # warm-up (CUDA graphs, compile)
    vl = rollouts(vllm_policy, reqs, env_factory, rs)
    print(f"model={model_dir} rollouts={len(reqs)} max_turns={args.max_turns} max_new_tokens={args.max_new_tokens}")
    describe("hf", *hf, model)
    describe("vllm", *vl, model)
    print(f"ratio vllm/hf = {vl[1] / hf[1]:.2f}")
    again = rollouts(vllm_policy, reqs, env_factory, rs)[0]
    same = sum(a.token_ids == b.token_ids for a, b in zip(vl[0], again))
    print(f"vllm seeded rerun: {same}/{len(reqs)} trajectories token-identical")
    del backend, vllm_policy
    return 0 if args.skip_train_step else train_step(model_dir)


if __name__ == "__main__":
    sys.exit(main())
