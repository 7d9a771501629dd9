"""The fixed-seed tiny run of ``tests/_golden_run.py``, for several processes.

* ``python tests/_dp_run.py prepare WORK`` writes the synthetic inbox and the tiny model once
  (``WORK/env.json``: the settings that point at them);
* ``torchrun --nproc_per_node N tests/_dp_run.py train WORK VARIANT OUT [KEY=VALUE ...]`` runs
  ``inboxrl train`` in each rank with the VARIANT's settings (the golden run's, same parity
  reward), output dir OUT, and the extra settings given; ``DP_FAIL_RANK=r`` (environment) makes
  rank ``r``'s first finished rollout raise, to test that a failing rank ends the job;
  ``DP_RESUME_FROM=checkpoint`` resumes from that checkpoint (``--resume-from``), ``DP_RESUME=1``
  from the latest one in OUT (``--resume``);
* ``python tests/_dp_run.py collect OUT`` writes ``OUT/outputs.json`` as the golden run does.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import _golden_run as golden


def fail_on_rank(rank: int) -> None:
    from inboxrl.agent.episode import Episode

    def boom(self, reason):
        raise RuntimeError(f"injected failure on rank {rank}")

    Episode.finish = boom


def train(work: Path, variant: str, out: Path, extra: list[str]) -> int:
    torch.set_num_threads(1)
    env = dict(golden.COMMON, **golden.VARIANTS[variant], **json.loads((work / "env.json").read_text()),
               OUTPUT_DIR=str(out))
    env.update(kv.split("=", 1) for kv in extra)
    os.environ.update(env)
    golden.parity_reward()
    if os.environ.get("DP_FAIL_RANK") == os.environ.get("RANK", "0"):
        fail_on_rank(int(os.environ["DP_FAIL_RANK"]))
    from inboxrl.cli import main as cli_main

    resume_from = os.environ.get("DP_RESUME_FROM")
    if resume_from:
        return cli_main(["train", "--resume-from", resume_from])
    return cli_main(["train", "--resume"] if os.environ.get("DP_RESUME") == "1" else ["train"])


def main(argv: list[str]) -> int:
    cmd, work = argv[0], Path(argv[1])
    if cmd == "prepare":
        (work / "env.json").write_text(json.dumps(golden.prepare(work)))
        return 0
    if cmd == "collect":
        (work / "outputs.json").write_text(json.dumps(golden.collect(work), sort_keys=True))
        return 0
    return train(work, argv[2], Path(argv[3]), argv[4:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
