"""``--fsdp`` up front: the combinations it refuses (one message, exit 2) and one process; vLLM
rollouts refused under several processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inboxrl.logs.console import ConsoleLog
from inboxrl.parallel import LOCAL
from inboxrl.run.checks import check_fsdp, check_vllm
from inboxrl.run.train import shard_policy
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import GRPOConfig, ModelConfig, RolloutConfig, Settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(**kw) -> Settings:
    model = ModelConfig(fsdp=kw.pop("fsdp", True), use_lora=kw.pop("use_lora", True))
    rollout = RolloutConfig()
    object.__setattr__(rollout, "rollout_engine", kw.pop("engine", "hf"))  # vllm is not installed here
    grpo = GRPOConfig(beta=kw.pop("beta", 0.0), top_p=kw.pop("top_p", 1.0),
                      recompute_old_logprobs=kw.pop("recompute", False))
    return Settings(model=model, rollout=rollout, grpo=grpo)


def test_fsdp_refuses_vllm_and_the_full_copy_kl_reference():
    with pytest.raises(ConfigError, match="rollout_engine=vllm"):
        check_fsdp(_settings(engine="vllm"))
    with pytest.raises(ConfigError, match="beta > 0 needs use_lora=true"):
        check_fsdp(_settings(beta=0.1, use_lora=False))
    check_fsdp(_settings(beta=0.1))  # LoRA: the reference is the adapter-disabled model
    check_fsdp(_settings(engine="vllm", fsdp=False, beta=0.1, use_lora=False))


def test_vllm_rollouts_are_refused_under_several_processes_and_for_nucleus_without_recompute():
    """Every rank would start its own engine and write the same adapter files; with top_p < 1
    vLLM's log-probs are the renormalised nucleus's, so π_old must come from the trainer."""
    with pytest.raises(ConfigError, match="rollout_engine=vllm runs in one training process, this job has 2"):
        check_vllm(_settings(engine="vllm", fsdp=False), world_size=2)
    check_vllm(_settings(engine="vllm", fsdp=False), world_size=1)
    check_vllm(_settings(engine="hf", fsdp=False), world_size=8)
    with pytest.raises(ConfigError, match="top_p=0.9 needs recompute_old_logprobs=true"):
        check_vllm(_settings(engine="vllm", fsdp=False, top_p=0.9), world_size=1)
    check_vllm(_settings(engine="vllm", fsdp=False, top_p=0.9, recompute=True), world_size=1)
    check_vllm(_settings(engine="hf", fsdp=False, top_p=0.9), world_size=1)


def test_fsdp_on_one_process_trains_as_one_rank_and_says_so():
    notes = []
    log = ConsoleLog()
    log.info = notes.append
    assert shard_policy(object(), ModelConfig(fsdp=True), LOCAL, log) is None
    assert shard_policy(object(), ModelConfig(fsdp=False), LOCAL, log) is None
    assert len(notes) == 1 and "single process has nothing to shard" in notes[0]


def test_train_with_fsdp_and_full_fine_tuning_kl_stops_with_one_message(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "train_grpo.py"), "--fsdp", "true", "--beta", "0.1",
                           "--use-lora", "false", "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "fsdp=true with beta > 0 needs use_lora=true" in proc.stderr
    assert "Traceback" not in proc.stderr
