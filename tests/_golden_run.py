"""Run a fixed-seed tiny training run through the ``train`` command and print its outputs.

Used by ``tests/test_refactor_golden.py`` (as a subprocess): ``python tests/_golden_run.py
WORKDIR VARIANT`` writes a synthetic inbox and a tiny random model into WORKDIR, runs
``inboxrl train`` on them with the settings of VARIANT (environment variables, the names
``.env`` files use), and writes one JSON object: every metrics.jsonl row, every eval JSON and
every step trajectory, without the fields that measure time, into WORKDIR/outputs.json.

A tiny random model never emits a valid tool call, so every group would get one reward and be
filtered. To make the update do real work, the outcome reward of a rollout is replaced by the
share of its sampled tokens whose id is even (a reward that depends on what was sampled).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

VARIANTS = {
    "masked": {"MODE": "masked", "MAX_STEPS": "2", "EVAL_STEPS": "2", "SAVE_STEPS": "2",
               "NUM_GENERATIONS": "3", "PER_DEVICE_TRAIN_BATCH_SIZE": "2", "VERBOSE": "true"},
    "rollout": {"MODE": "rollout", "MAX_STEPS": "2", "EVAL_STEPS": "1", "SAVE_STEPS": "0",
                "NUM_GENERATIONS": "2", "PER_DEVICE_TRAIN_BATCH_SIZE": "2", "BETA": "0.05",
                "NUM_ITERATIONS": "2", "GRADIENT_ACCUMULATION_STEPS": "2", "LOSS_AGGREGATION": "seq_mean"},
}
COMMON = {"MAX_TURNS": "2", "MAX_TOKENS": "12", "MAX_CONTEXT_TOKENS": "4096", "EVAL_DATASET_SIZE": "3",
          "TRAIN_DATASET_SIZE": "6", "DTYPE": "fp32", "LEARNING_RATE": "5e-3", "WARMUP_STEPS": "0",
          "WANDB_MODE": "disabled", "SEED": "11", "ROLLOUT_BATCH_SIZE": "0"}
TIME_KEYS = {"rollout_time", "training_time", "step_time", "tokens_per_second", "eval_time", "timings"}


def parity_reward() -> None:
    """Replace each finished rollout's outcome reward by the share of even sampled token ids."""
    from inboxrl.agent.episode import Episode

    finish = Episode.finish

    def patched(self, reason):
        was_done = self.done
        finish(self, reason)
        if not was_done:
            ids = [i for i, s in zip(self.traj.token_ids, self.traj.sources) if s == "model"]
            self.traj.reward = sum(1 for i in ids if i % 2 == 0) / max(len(ids), 1)

    Episode.finish = patched


def prepare(work: Path) -> dict[str, str]:
    from inboxrl.email.synth import make_data
    from inboxrl.policy.tiny import make_tiny_model

    data = make_data(work / "data", seed=3, num_emails=200)
    model, tok = make_tiny_model(seed=1)
    model.save_pretrained(work / "tiny")
    tok.save_pretrained(work / "tiny")
    return {"DB_PATH": str(data.db_path), "SCENARIOS_PATH": str(data.scenarios_path),
            "MODEL_NAME": str(work / "tiny")}


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in TIME_KEYS}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def collect(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = {p.name: json.loads(p.read_text()) for p in sorted((out / "eval_logs").glob("*.json"))}
    trajs = {p.name: [json.loads(line) for line in p.read_text().splitlines()]
             for p in sorted((out / "trajectories").glob("*.jsonl"))}
    return strip({"metrics": rows, "evals": evals, "trajectories": trajs})


def main(work: str, variant: str) -> int:
    torch.set_num_threads(1)
    work_dir = Path(work)
    env = dict(COMMON, **VARIANTS[variant], **prepare(work_dir), OUTPUT_DIR=str(work_dir / "run"))
    os.environ.update(env)
    parity_reward()
    from inboxrl.cli import main as cli_main

    rc = cli_main(["train"])
    if rc != 0:
        return rc
    (work_dir / "outputs.json").write_text(json.dumps(collect(work_dir / "run"), sort_keys=True, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
