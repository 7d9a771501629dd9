"""Rollout-engine and mismatch-control settings: names, defaults, validation, and the one clear
message (exit 2) when ROLLOUT_ENGINE=vllm is chosen without vLLM installed."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inboxrl.grpo.trainer import GRPOTrainer
from inboxrl.run.vllm import vllm_model_dir
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import VLLM_MISSING
from inboxrl.settings.sources import build_settings

ROOT = Path(__file__).resolve().parents[1]
HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def test_defaults_are_todays_behaviour():
    s = build_settings(env={})
    assert s.rollout.rollout_engine == "hf" and s.rollout.vllm_mode == "colocate"
    assert s.grpo.recompute_old_logprobs is False and s.grpo.tis_cap == 2.0


def test_env_names():
    s = build_settings(env={"RECOMPUTE_OLD_LOGPROBS": "true", "TIS_CAP": "3", "VLLM_MODE": "server",
                            "VLLM_SERVER_URL": "http://gpu:9000", "VLLM_GPU_MEMORY_UTILIZATION": "0.5"})
    assert s.grpo.recompute_old_logprobs is True and s.grpo.tis_cap == 3.0
    assert (s.rollout.vllm_mode, s.rollout.vllm_server_url, s.rollout.vllm_gpu_memory_utilization) == \
        ("server", "http://gpu:9000", 0.5)
    with pytest.raises(ConfigError):
        build_settings(env={"TIS_CAP": "-1"})
    with pytest.raises(ConfigError):
        build_settings(env={"ROLLOUT_ENGINE": "sglang"})


def test_trainer_passes_mismatch_settings_to_the_update():
    s = build_settings(env={"RECOMPUTE_OLD_LOGPROBS": "1", "TIS_CAP": "1.5"})
    from inboxrl.run.train import trainer_settings

    trainer = GRPOTrainer.__new__(GRPOTrainer)
    trainer.settings = trainer_settings(s)
    u = trainer.update_settings()
    assert u.recompute_old_logprobs is True and u.tis_cap == 1.5


def test_vllm_model_dir_of_an_adapter_checkpoint(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base"}))
    assert vllm_model_dir(str(tmp_path)) == "/models/base"
    assert vllm_model_dir("/models/full") == "/models/full"


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here: the missing-vLLM message cannot be shown")
def test_vllm_without_vllm_stops_with_one_message(tmp_path):
    script = Path(sys.executable).with_name("inboxrl")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "inboxrl.cli"]
    proc = subprocess.run([*cmd, "train", "--max-steps", "1", "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src"), ROLLOUT_ENGINE="vllm"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: {VLLM_MISSING}"
    assert not (tmp_path / "out").exists()  # stopped before anything was written
