"""``inboxrl view`` end to end: a tiny real run (tiny random model, 2 steps, 1 eval after the
baseline) trained in the test, then the verb as a subprocess; ``--serve`` on 127.0.0.1."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from inboxrl.agent.trajectory import load_jsonl
from inboxrl.logs.console import ConsoleLog
from inboxrl.policy.tiny import make_tiny_model
from inboxrl.run.train import build_trainer
from inboxrl.settings.sources import build_settings
from inboxrl.synth.data import make_data

from _grpo_util import token_parity_reward
from _view_util import parse, rollout_section

_SCRIPT = Path(sys.executable).with_name("inboxrl")  # the installed console script
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "inboxrl.cli"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("view_e2e")
    data = make_data(root / "data", seed=5, num_emails=300)
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    out = root / "run"
    cli = dict(model_name=root / "tiny", db_path=data.db_path, scenarios_path=data.scenarios_path, output_dir=out,
               max_steps=2, num_generations=2, per_device_train_batch_size=2, max_turns=2, max_tokens=8,
               max_context_tokens=4096, eval_steps=2, save_steps=2, eval_dataset_size=2, train_dataset_size=6,
               dtype="fp32", learning_rate=5e-3, warmup_steps=0, wandb_mode="disabled", seed=7)
    torch.set_num_threads(1)
    trainer = build_trainer(build_settings(cli={k: str(v) for k, v in cli.items()}, env={}), ConsoleLog(verbose=False))
    token_parity_reward(trainer)
    trainer.fit()
    proc = subprocess.run(CLI + ["view", str(out)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_view_verb_builds_the_run(tiny_run):
    out, proc = tiny_run
    assert f"Wrote {out / 'view' / 'index.html'}" in proc.stdout
    assert "2 step pages, 2 eval pages" in proc.stdout
    index = (out / "view" / "index.html").read_text()
    for section in ("eval-trend", "train-curves", "steps", "settings"):
        assert f'id="{section}"' in index
    assert "tokens decoded with the tokenizer of" in index  # found from config.json's model_name
    plots = sorted(p.name for p in (out / "view" / "plots").glob("*.svg"))
    assert "train_reward.svg" in plots and "eval_rates.svg" in plots and "train_step_time.svg" in plots


def test_heat_map_and_token_view_match_the_step_files(tiny_run):
    out, _ = tiny_run
    nonzero = 0
    for step in (1, 2):
        trajs = load_jsonl(out / "trajectories" / f"step_{step:04d}.jsonl")
        heat = parse((out / "view" / "steps" / f"step_{step:04d}.html").read_text()).heat
        for t in trajs:
            row = heat[t.group_id][t.rollout_index]
            expected = [turn.advantage if t.kept else 0.0 for turn in t.turns]
            assert [float(a["data-adv"]) for a, _ in row] == expected
            nonzero += sum(1 for a in expected if a != 0.0)
            page = rollout_section((out / "view" / "rollouts" / f"step_{step:04d}" /
                                    f"g{t.group_id:03d}.html").read_text(), t.rollout_index)
            hover = re.findall(r'class="tok src-model" title="turn (\d+) · log-prob (\S+) · advantage (\S+)"', page)
            model = [i for i, s in enumerate(t.sources) if s == "model"]
            adv = t.token_advantages()
            assert [(int(a), b, c) for a, b, c in hover] == \
                [(t.turn_index[i] + 1, f"{t.logprobs[i]:.4f}", f"{adv[i]:+.4f}") for i in model]
            assert parse(page).counts["turn"] == len(t.turns)
    assert nonzero > 0  # a kept group: the real advantages, not only zeros


def test_eval_pages_of_the_tiny_run(tiny_run):
    out, _ = tiny_run
    stats = json.loads((out / "eval_logs" / "eval_step_0002.json").read_text())
    page = (out / "view" / "evals" / "eval_0002.html").read_text()
    for row in stats["per_scenario"]:
        assert f"<code>{row['scenario_id']}</code>" in page
    assert page.count('class="this"') == len(stats["per_scenario"])
    assert page.count('class="baseline"') == len(stats["per_scenario"])


def test_missing_output_dir_is_one_readable_error(tmp_path):
    proc = subprocess.run(CLI + ["view", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: output directory not found: {tmp_path / 'nope'}"
    assert "Traceback" not in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_rebuilds_on_reload(tiny_run):
    out, _ = tiny_run
    port = _free_port()
    proc = subprocess.Popen(CLI + ["view", str(out), "--serve", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/index.html"
        body = None
        for _ in range(240):
            try:
                body = urllib.request.urlopen(url, timeout=30).read().decode()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert body is not None and 'id="train-curves"' in body, proc.stderr.read() if proc.poll() else ""
        step_page = out / "view" / "steps" / "step_0001.html"
        step_page.unlink()
        urllib.request.urlopen(url, timeout=60).read()  # reloading the overview rebuilds what is missing
        assert step_page.is_file()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/steps/step_0001.html", timeout=30).read().decode()
        assert 'class="heatmap"' in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bad_view_arguments_exit_2(tiny_run):
    out, _ = tiny_run
    proc = subprocess.run(CLI + ["view", str(out), "--workers", "-1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --workers must be >= 0"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(CLI + ["view", str(out), "--serve", str(port)], capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr
