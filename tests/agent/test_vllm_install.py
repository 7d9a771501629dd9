"""The ``vllm`` extra and the GPU check without a GPU: the extra's vLLM range admits exactly the
releases whose pins agree with this project's (torch, transformers) and with TRL's supported vLLM
range; ``bench/gpu_check.py`` parses its arguments and, without CUDA or vLLM, says so and exits 2."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# what each vLLM release's wheel metadata (Requires-Dist) pins, read from PyPI on 2026-12-02
VLLM_PINS = {
    "0.26.0": ("2.11.0", ">=5.5.3"), "0.27.0": ("2.13.0", ">=5.5.3"), "0.27.1": ("2.13.0", ">=5.5.3"),
    "0.28.0": ("2.13.0", ">=5.5.3"), "0.29.0": ("2.13.0", ">=5.10.4"), "0.30.0": ("2.13.0", ">=5.10.4"),
    "0.31.0": ("2.13.0", "<5.18.0,>=5.10.4"),
}


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pin(requirements, name):
    req = next(Requirement(r) for r in requirements if Requirement(r).name == name)
    return req.specifier


def test_vllm_extra_admits_exactly_the_releases_that_fit_our_pins():
    project = _project()
    vllm = _pin(project["optional-dependencies"]["vllm"], "vllm")
    torch_pin = next(iter(_pin(project["dependencies"], "torch"))).version
    transformers_pin = next(iter(_pin(project["dependencies"], "transformers"))).version
    trl = _pin(importlib.metadata.requires("trl"), "vllm")  # TRL's own "vllm" extra: the versions it supports
    for version, (torch_needed, transformers_range) in VLLM_PINS.items():
        fits = (torch_needed == torch_pin and Requirement(f"transformers{transformers_range}").specifier
                .contains(transformers_pin) and trl.contains(version))
        assert vllm.contains(version) == fits, (version, str(vllm))


HAVE_GPU_STACK = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def _gpu_check(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_gpu_check_parses_its_arguments():
    proc = _gpu_check("--help")
    assert proc.returncode == 0 and "--skip-train-step" in proc.stdout and "--rollouts" in proc.stdout
    proc = _gpu_check("--rollouts", "many")
    assert proc.returncode == 2 and "invalid int value: 'many'" in proc.stderr


@pytest.mark.skipif(HAVE_GPU_STACK, reason="CUDA and vLLM are here: gpu_check runs instead of refusing")
def test_gpu_check_without_cuda_or_vllm_says_so_and_exits_2():
    proc = _gpu_check("--rollouts", "4", "--skip-train-step")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == "gpu_check needs CUDA and vLLM (pip install 'inboxrl[vllm]'): not run"
    assert proc.stdout == ""
