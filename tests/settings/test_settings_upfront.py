"""Bad settings stop up front with one readable line and exit status 2: non-finite numbers,
keep_checkpoints 0, an unusable output_dir, a second run on the same output_dir, a context
budget with no room for a model token, a new run on an earlier run's checkpoints (unless
overwrite_output_dir); beta > 0 with full fine-tuning trains against a frozen
copy of the initial model instead of crashing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import inboxrl.run.train as run_train
from inboxrl.cli import main as cli_main
from inboxrl.synth.data import make_data
from inboxrl.policy.tiny import make_tiny_model
from inboxrl.utils.run_lock import RunLock

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fault_drill  # noqa: E402


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("upfront")
    data = make_data(root / "data", seed=5, num_emails=300)
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    return {"DB_PATH": str(data.db_path), "SCENARIOS_PATH": str(data.scenarios_path), "MODEL_NAME": str(root / "tiny")}


def _train(assets, monkeypatch, capsys, args, model_loads=True):
    for k, v in assets.items():
        monkeypatch.setenv(k, v)
    if not model_loads:
        monkeypatch.setattr(run_train, "load_policy", lambda *a, **k: pytest.fail("the model was loaded"))
    code = cli_main(["train", "--max-steps", "1", "--eval-dataset-size", "2", "--train-dataset-size", "4",
                     "--num-generations", "2", "--max-turns", "1", "--max-tokens", "4", "--dtype", "fp32",
                     "--wandb-mode", "disabled", *args])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("args,needle", [
    (["--learning-rate", "nan"], "learning_rate must be a finite number (got 'nan' from --learning-rate)"),
    (["--max-grad-norm", "inf"], "max_grad_norm must be a finite number"),
    (["--keep-checkpoints", "0"], "keep_checkpoints must be >= 1 (got 0)"),
    (["--output-dir", "/proc/inboxrl-x"], "output_dir /proc/inboxrl-x cannot be used: No such file or directory"),
])
def test_bad_settings_stop_before_the_model_is_loaded(assets, monkeypatch, capsys, tmp_path, args, needle):
    if "--output-dir" not in args:
        args = args + ["--output-dir", str(tmp_path / "out")]
    code, err = _train(assets, monkeypatch, capsys, args, model_loads=False)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_an_output_dir_that_is_a_file(assets, monkeypatch, capsys, tmp_path):
    (tmp_path / "out").write_text("not a directory")
    code, err = _train(assets, monkeypatch, capsys, ["--output-dir", str(tmp_path / "out")], model_loads=False)
    assert code == 2 and err == [f"error: output_dir {tmp_path / 'out'} is not a directory; choose another --output-dir"]


def test_a_second_run_on_the_same_output_dir_is_refused(assets, monkeypatch, capsys, tmp_path):
    with RunLock(tmp_path / "out"):  # another run holds it
        code, err = _train(assets, monkeypatch, capsys, ["--output-dir", str(tmp_path / "out")], model_loads=False)
    assert code == 2 and len(err) == 1 and "is in use by another run" in err[0]
    assert not (tmp_path / "out" / "config.json").exists()  # it wrote nothing


def _finished_run(out: Path) -> None:
    """An earlier run's outputs: a complete checkpoint, metrics, eval logs, trajectories, wandb id."""
    from inboxrl.grpo.checkpoint import write_manifest

    ck = out / "checkpoints" / "checkpoint-0003"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text('{"step": 3}')
    write_manifest(ck, 3)
    for rel in ("metrics.jsonl", "eval_metrics.jsonl", "wandb_run.json", "trajectories/step_0003.jsonl",
                "eval_logs/eval_step_0003.json"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text('{"step": 3}\n')


def test_a_new_run_on_an_earlier_runs_checkpoints_is_refused(assets, monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    _finished_run(out)
    code, err = _train(assets, monkeypatch, capsys, ["--output-dir", str(out)], model_loads=False)
    assert code == 2 and err == [f"error: output_dir {out} holds an earlier run (checkpoints of steps 3): continue "
                                 "it with --resume, choose a new --output-dir, or pass --overwrite-output-dir to "
                                 "delete its outputs"]
    code, err = _train(assets, monkeypatch, capsys, ["--output-dir", str(out), "--fresh"], model_loads=False)
    assert code == 2 and "holds an earlier run" in err[0]  # --fresh does not resume: the same
    assert (out / "checkpoints" / "checkpoint-0003").is_dir() and (out / "metrics.jsonl").is_file()


def test_overwrite_output_dir_deletes_the_earlier_run_before_the_model_is_loaded(assets, monkeypatch, capsys,
                                                                                 tmp_path):
    out = tmp_path / "out"
    _finished_run(out)
    seen = []

    def load_policy(*a, **k):
        seen.append(sorted(p.name for p in out.iterdir()))
        raise RuntimeError("stop at the model load")

    monkeypatch.setattr(run_train, "load_policy", load_policy)
    with pytest.raises(RuntimeError, match="stop at the model load"):
        _train(assets, monkeypatch, capsys, ["--output-dir", str(out), "--overwrite-output-dir"])
    assert seen == [[".inboxrl.lock", "config.json", "validation_ids.json"]]  # the new run's own files only
    assert "overwrite_output_dir: deleted the earlier run's checkpoints, metrics.jsonl" in capsys.readouterr().out


def test_a_context_budget_without_room_for_a_token(assets, monkeypatch, capsys, tmp_path):
    code, err = _train(assets, monkeypatch, capsys, ["--max-context-tokens", "10", "--output-dir", str(tmp_path / "o")])
    err = [line for line in err if "Loading weights" not in line]  # the model's loading bar
    assert code == 2 and len(err) == 1, err
    assert "max_context_tokens=10 leaves no room for the model to write a token" in err[0]
    assert "set --max-context-tokens to at least" in err[0]
    assert not (tmp_path / "o" / "metrics.jsonl").exists()  # no step ran


def test_kl_with_full_fine_tuning_uses_a_frozen_copy_of_the_initial_model(assets, tmp_path):
    from inboxrl.logs.console import ConsoleLog

    torch.set_num_threads(1)
    drill_assets = {"db": assets["DB_PATH"], "scenarios": assets["SCENARIOS_PATH"], "model": assets["MODEL_NAME"]}
    cfg = fault_drill.drill_settings(drill_assets, tmp_path / "o", beta=0.1, use_lora="false", max_steps=3,
                                     eval_steps=0, run_baseline_eval="false")
    trainer = run_train.build_trainer(cfg, ConsoleLog(verbose=False))
    fault_drill._rig(trainer)  # a reward that depends on the sampled tokens: real updates
    initial = {k: v.clone() for k, v in trainer.policy.model.state_dict().items()}
    trainer.restore(resume=False, resume_from=None, fresh=False)
    trainer.fit()
    rows = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    first = next(i for i, r in enumerate(rows) if r["grad_norm"] > 0)  # the first real update
    # until then the policy is the reference (KL 0); once the weights moved, a KL to it is measured
    assert all(r["kl"] == pytest.approx(0.0, abs=1e-6) for r in rows[:first + 1])
    assert first < 2 and rows[first + 1]["kl"] > 0
    ref = trainer.ref_model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in initial.items())  # the reference stayed frozen
    assert not all(torch.equal(trainer.policy.model.state_dict()[k], v) for k, v in initial.items())
