"""``inboxrl eval`` samples on the engine ``rollout_engine`` selects, as training does: with
``--rollout-engine vllm`` (a fake vLLM here) the eval's rollouts come from vLLM, which first
receives the evaluated model's weights and sleeps after the rollouts; without vLLM installed the
verb stops with one message (exit 2) before writing anything."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _vllm_util import FakeLLM, colocated, install_fake_vllm
from inboxrl import cli
from inboxrl.agent.chat import ChatRenderer
from inboxrl.email.scenarios import load_scenarios
from inboxrl.email.tools import TOOL_SCHEMAS
from inboxrl.email.types import ToolCall
from inboxrl.policy.tiny import make_tiny_model
from inboxrl.settings.sections import VLLM_MISSING
from inboxrl.synth.data import make_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_engine")
    make_data(root / "data", seed=3, num_emails=200)
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    return {"db": root / "data" / "emails.db", "scenarios": root / "data" / "scenarios.jsonl",
            "model": root / "tiny", "tok": tok, "param_names": [n for n, _ in model.named_parameters()]}


def _flags(assets, out: Path) -> list[str]:
    return ["--db-path", str(assets["db"]), "--scenarios-path", str(assets["scenarios"]), "--output-dir", str(out),
            "--model-name", str(assets["model"]), "--dtype", "fp32", "--max-turns", "2", "--max-tokens", "96",
            "--max-context-tokens", "4096", "--eval-dataset-size", "3", "--seed", "1"]


def test_eval_verb_samples_with_vllm_when_chosen(assets, tmp_path, monkeypatch):
    install_fake_vllm(monkeypatch)
    renderer = ChatRenderer(assets["tok"], TOOL_SCHEMAS)
    # the fake vLLM answers every question right at its first turn: only vLLM can score 1.0 here
    # (the tiny random model behind the transformers engine answers nothing)
    scripts = {s.question: [renderer.format_call(ToolCall("return_final_answer", {
        "answer": s.answer, "sources": s.message_ids})) + "<|im_end|>"] for s in load_scenarios(assets["scenarios"])}
    llm, made = FakeLLM(assets["tok"], scripts), []

    def backend(model_path, settings, max_model_len, seed, lora_rank):
        made.append((model_path, settings.mode, max_model_len, seed, lora_rank))
        return colocated(llm, can_sleep=True)

    monkeypatch.setattr("inboxrl.run.vllm.ColocatedBackend", backend)
    out = tmp_path / "eval"
    assert cli.main(["eval", *_flags(assets, out), "--rollout-engine", "vllm"]) == 0
    assert made == [(str(assets["model"]), "colocate", 4096, 1, None)]  # the model dir, no adapter
    # the evaluated weights were pushed before the first rollout; vLLM slept after the rollouts
    assert llm.events[:2] == ["load_weights", "reset_prefix_cache"] and llm.events[-1] == "sleep(1)"
    assert [n for n, _ in llm.weights] == assets["param_names"]
    prompts, params, lora = llm.calls[0]
    assert len(llm.calls) == 1 and len(prompts) == 3 and lora is None  # one turn of all 3 scenarios
    assert all(p["temperature"] == 0.0 for p in params)  # eval is greedy
    doc = json.loads((out / "eval_logs" / "eval_step_0000.json").read_text())
    assert doc["total_samples"] == 3 and doc["accuracy"] == 1.0


def test_api_eval_takes_no_rollout_engine(assets, tmp_path, monkeypatch, capsys):
    install_fake_vllm(monkeypatch)
    code = cli.main(["eval", *_flags(assets, tmp_path / "api"), "--rollout-engine", "vllm",
                     "--api-base-url", "http://localhost:1"])
    assert code == 2 and "takes no rollout_engine" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                    reason="vLLM is installed here: the missing-vLLM message cannot be shown")
@pytest.mark.parametrize("how", ["flag", "env"])
def test_eval_vllm_without_vllm_stops_with_one_message(assets, tmp_path, how):
    script = Path(sys.executable).with_name("inboxrl")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "inboxrl.cli"]
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    args = [*cmd, "eval", *_flags(assets, out)]
    if how == "flag":
        args += ["--rollout-engine", "vllm"]
    else:
        env["ROLLOUT_ENGINE"] = "vllm"
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: {VLLM_MISSING}"
    assert not out.exists()
