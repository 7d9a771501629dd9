"""The trainer end to end on a tiny random model and a small generated inbox.

- 4 steps straight and 2 steps + resume + 2 steps give the same metrics (weights, optimizer,
  scheduler, RNG and the data cursor are all restored);
- the run writes metrics.jsonl, eval files, trajectories, checkpoints, and wandb (offline)
  records train/* and eval/* keys;
- bad settings stop with one readable message and exit status 2.

A tiny random model never emits a valid tool call, so every rollout would get the same reward
and every group would be filtered. To give GRPO a signal that depends on what was sampled,
the tests replace the rubric reward with the share of sampled tokens whose id is even.
"""
from __future__ import annotations

import json

import pytest
import torch

from inboxrl.cli import main as cli_main
from inboxrl.grpo import checkpoint as ckpt
from inboxrl.logs.console import ConsoleLog
from inboxrl.policy.loading import load_model
from inboxrl.policy.tiny import make_tiny_model
from inboxrl.run.train import build_trainer
from inboxrl.settings.base import ConfigError
from inboxrl.settings.resume import settings_differences
from inboxrl.settings.sources import build_settings
from inboxrl.synth.data import make_data

from _grpo_util import token_parity_reward
from _logs_util import read_wandb_history_keys


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_data(root / "data", seed=5, num_emails=300)
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    return {"db": str(data.db_path), "scenarios": str(data.scenarios_path), "model": str(root / "tiny")}


def settings(assets, out, **over):
    cli = dict(model_name=assets["model"], db_path=assets["db"], scenarios_path=assets["scenarios"],
               output_dir=str(out), max_steps=4, num_generations=2, per_device_train_batch_size=2,
               max_turns=2, max_tokens=8, max_context_tokens=4096, eval_steps=2, save_steps=2,
               eval_dataset_size=2, train_dataset_size=6, dtype="fp32", learning_rate=5e-3,
               warmup_steps=0, wandb_mode="disabled", seed=7)
    cli.update(over)
    return build_settings(cli={k: str(v) for k, v in cli.items()}, env={})


def train_rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def run(cfg, until=None, resume=False):
    torch.set_num_threads(1)
    trainer = build_trainer(cfg, ConsoleLog(verbose=False), resume=resume)
    token_parity_reward(trainer)
    trainer.restore(resume=resume, resume_from=None, fresh=False)
    return trainer.fit(until_step=until)


KEYS = ("avg_reward", "loss", "policy_loss", "grad_norm", "learning_rate", "trainable_tokens", "groups_kept")


def test_resume_gives_the_same_metrics_as_a_straight_run(assets, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    state = run(settings(assets, straight, wandb_mode="offline"))
    assert state.step == 4
    run(settings(assets, resumed), until=2)
    assert [r["step"] for r in train_rows(resumed)] == [1, 2]
    run(settings(assets, resumed), resume=True)
    a, b = train_rows(straight), train_rows(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert any(r["groups_kept"] > 0 and abs(r["grad_norm"]) > 0 for r in a)  # real updates happened
    for ra, rb in zip(a, b):
        for k in KEYS:
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-7), (ra["step"], k)

    # outputs of a run
    for name in ("eval_step_0000.json", "eval_step_0002.json", "eval_step_0004.json", "baseline_eval.json"):
        assert (straight / "eval_logs" / name).is_file(), name
    assert (straight / "trajectories" / "step_0004.jsonl").is_file()
    ckpts = sorted(p.name for p in (straight / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert ckpts == ["checkpoint-0002", "checkpoint-0004"]
    assert json.loads((straight / "validation_ids.json").read_text())
    run_files = list((tmp_path / "wandb").rglob("run-*.wandb"))
    assert len(run_files) == 1
    keys = set().union(*read_wandb_history_keys(run_files[0]))
    for k in ("train/loss", "train/avg_reward", "train/groups_kept", "train/groups_filtered",
              "train/num_early_exit", "eval/accuracy", "eval/beat_rate", "eval/total_searches"):
        assert k in keys, k


def test_a_new_best_eval_saves_a_loadable_best_checkpoint(assets, tmp_path):
    """A run whose eval improves writes ``{output_dir}/best`` (the checkpoint plus the tokenizer)
    and keeps going; ``load_model`` (so ``eval --init-from``) reads it back."""
    out = tmp_path / "run"
    torch.set_num_threads(1)
    trainer = build_trainer(settings(assets, out, max_steps=2, eval_steps=2), ConsoleLog(verbose=False))
    token_parity_reward(trainer)
    note_eval = trainer.note_eval
    trainer.note_eval = lambda step, result: note_eval(step, result) or step == 2  # step 2 beats step 0
    state = trainer.fit()
    best = out / "best"
    assert state.step == 2 and state.best_checkpoint == str(best)
    assert (best / "adapter_model.safetensors").is_file() and (best / "tokenizer_config.json").is_file()
    assert json.loads((best / "trainer_state.json").read_text())["step"] == 2
    assert json.loads((out / "trainer_state.json").read_text())["best_checkpoint"] == str(best)
    model, tok = load_model(best, dtype="fp32", device="cpu")
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_an_early_stop_checkpoints_its_step_and_a_resume_stays_stopped(assets, tmp_path):
    """Patience stops the run after step 1 (its eval does not beat the baseline) at a step outside
    the save schedule: that step is checkpointed anyway (so ``trainer_state.json`` never names a
    step no checkpoint holds), and ``--resume`` trains nothing more."""
    out = tmp_path / "run"
    cfg = settings(assets, out, max_steps=4, eval_steps=1, save_steps=0, patience=1)
    state = run(cfg)
    assert state.step == 1 and state.best_step == 0
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["checkpoint-0001"]
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 1
    before = (out / "metrics.jsonl").read_text()
    again = run(cfg, resume=True)
    assert again.step == 1 and (out / "metrics.jsonl").read_text() == before
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["checkpoint-0001"]


def test_the_final_eval_is_checkpointed_so_a_resume_of_a_finished_run_evaluates_nothing(assets, tmp_path):
    """Step 3 is the last, not an eval step: the final eval runs after its checkpoint, which is then
    written again to record it; resuming the finished run trains and evaluates nothing."""
    out = tmp_path / "run"
    cfg = settings(assets, out, max_steps=3, eval_steps=2, save_steps=2)
    assert run(cfg).step == 3
    assert ckpt.read_state(out / "checkpoints" / "checkpoint-0003")["last_eval_step"] == 3
    before = {name: (out / name).read_text() for name in ("metrics.jsonl", "eval_metrics.jsonl")}
    trainer = build_trainer(cfg, ConsoleLog(verbose=False), resume=True)
    token_parity_reward(trainer)
    trainer.restore(resume=True, resume_from=None, fresh=False)
    trainer.run_eval = lambda step: pytest.fail(f"evaluated step {step} again")
    assert trainer.fit().step == 3
    assert {name: (out / name).read_text() for name in before} == before


def test_a_steps_micro_batches_wait_for_the_judge_once_after_the_last(assets, tmp_path):
    """With gradient_accumulation_steps=2 a step decodes both rollout batches, then settles the
    concurrent judge's verdicts once (one moment ``since`` for every env): the judge's step budget
    bounds the whole step's wait, not each batch's."""
    torch.set_num_threads(1)
    cfg = settings(assets, tmp_path / "run", gradient_accumulation_steps=2, max_steps=1)
    trainer = build_trainer(cfg, ConsoleLog(verbose=False))
    events: list[tuple[str, float | None]] = []
    make_env = trainer.env_factory

    def recording_factory(scenario):
        env = make_env(scenario)
        settle = env.settle
        env.settle = lambda since: events.append(("settle", since)) or settle(since)
        events.append(("env", None))
        return env

    trainer.env_factory = recording_factory
    trajectories, scenarios = trainer.collect(1)
    trainer.close()
    assert len(scenarios) == 4 and len(trajectories) == 8
    kinds = [k for k, _ in events]
    assert kinds == ["env"] * 8 + ["settle"] * 8  # both batches decoded before any wait
    assert len({since for k, since in events if k == "settle"}) == 1


def test_resume_with_different_run_settings_stops_with_the_differences(assets, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(settings(assets, out), until=2)
    saved = json.loads((out / "checkpoints" / "checkpoint-0002" / "trainer_state.json").read_text())
    assert saved["settings"]["learning_rate"] == pytest.approx(5e-3) and saved["step"] == 2
    assert saved["settings"] == json.loads((out / "config.json").read_text())  # one record of the run
    import inboxrl.run.train as train_module

    with monkeypatch.context() as m, pytest.raises(ConfigError) as err:
        m.setattr(train_module, "load_policy", lambda *a, **k: pytest.fail("the model was loaded"))
        run(settings(assets, out, learning_rate=1e-3, num_generations=4), resume=True)
    assert saved["settings"] == json.loads((out / "config.json").read_text())  # the run's record kept
    msg = str(err.value)
    assert "learning_rate=0.001 (run: 0.005)" in msg and "num_generations=4 (run: 2)" in msg
    assert "max_steps" not in msg and "checkpoint-0002" in msg
    assert [r["step"] for r in train_rows(out)] == [1, 2]  # nothing was trained or logged
    # where and how often it evaluates, logs and saves may change: the run goes on
    state = run(settings(assets, out, eval_steps=4, save_steps=1, verbose=True), resume=True)
    assert state.step == 4 and [r["step"] for r in train_rows(out)] == [1, 2, 3, 4]


def test_a_rejected_resume_of_a_warm_started_run_stops_before_the_warm_start(assets, tmp_path, monkeypatch):
    """A warm-started run resumed with another learning rate stops before the data is built and the
    warm start trained (its cache would miss and cost minutes of SFT)."""
    import inboxrl.run.train as train_module
    import inboxrl.run.warm_start as warm

    monkeypatch.setattr(warm, "ensure_warm_start", lambda s, data, console: assets["model"])
    out = tmp_path / "run"
    run(settings(assets, out, warm_start="true", max_steps=2), until=1)
    with monkeypatch.context() as m, pytest.raises(ConfigError, match="learning_rate=0.001 \\(run: 0.005\\)"):
        m.setattr(train_module, "resolve_data", lambda *a, **k: pytest.fail("the data was built"))
        m.setattr(warm, "ensure_warm_start", lambda *a, **k: pytest.fail("the warm start was trained"))
        run(settings(assets, out, warm_start="true", max_steps=2, learning_rate=1e-3), resume=True)
    state = run(settings(assets, out, warm_start="true", max_steps=2), resume=True)  # same settings: resumes
    assert state.step == 2 and [r["step"] for r in train_rows(out)] == [1, 2]


def test_only_run_defining_settings_count_as_differences(assets, tmp_path):
    now = settings(assets, tmp_path).flat()
    assert settings_differences(now, now) == []
    changed = dict(now, output_dir="/elsewhere", wandb_mode="offline", token_budget=1, lr_scheduler="linear")
    assert settings_differences(now, changed) == ["lr_scheduler='cosine' (run: 'linear')"]
    assert settings_differences(now, {"learning_rate": 5e-3}) == []  # settings a run did not record


def test_a_warm_start_is_recorded_as_the_runs_init_from(assets, tmp_path, monkeypatch):
    """``--warm-start`` resolves ``init_from`` before anything is recorded: config.json, wandb's
    config and every checkpoint describe the run that trained (starting from the warm start)."""
    import inboxrl.run.warm_start as warm

    calls = []
    monkeypatch.setattr(warm, "ensure_warm_start", lambda s, data, console: calls.append(s) or assets["model"])
    cfg = settings(assets, tmp_path / "run", warm_start="true", max_steps=1)
    trainer = build_trainer(cfg, ConsoleLog(verbose=False))
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["init_from"] == assets["model"] and recorded["warm_start"] is True
    assert dict(trainer.settings.recorded) == recorded
    assert calls[0].sft.sft_eval == "none" and cfg.model.init_from == ""  # the built settings are untouched


@pytest.mark.parametrize("env,needle", [
    ({"MAX_STEPS": "abc"}, "max_steps must be an integer"),
    ({"DB_PATH": "/nonexistent/x.db", "SCENARIOS_PATH": "/nonexistent/s.jsonl"}, "does not exist"),
    ({"MODEL_NAME": "/nonexistent/model", "DB_PATH": "", "SCENARIOS_PATH": ""}, "/nonexistent/model"),
])
def test_bad_settings_exit_2_with_one_message(env, needle, monkeypatch, capsys, tmp_path):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "out"))
    assert cli_main(["train", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
