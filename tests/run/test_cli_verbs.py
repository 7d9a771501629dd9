"""Every user-facing command run end to end as a subprocess on tiny inputs.

``inboxrl build-db`` (maildir, mbox, parquet), ``make-data``, ``eval-reference``, ``eval``,
``train``, ``report``, ``sft`` and ``python train_grpo.py``: each is started the way a user
starts it (the installed ``inboxrl`` script, or ``python -m inboxrl.cli`` where the script is
not installed), so a broken import or a wrong argument name in any verb fails here. Models are
tiny random ones with the real tokenizer; runs are one step long.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inboxrl.email.store import EmailStore
from inboxrl.policy.tiny import make_tiny_model

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("inboxrl")

MAIL = """Message-ID: <{n}.{who}@test>
Date: Mon, 14 May 2001 16:{n:02d}:00 -0700
From: "Pat Sender" <pat@example.com>
To: {who}@example.com
Subject: Report number {n}

The quarterly report {n} for {who} is attached.
"""


def inboxrl(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one ``inboxrl`` command with this checkout's sources first on the path."""
    cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "inboxrl.cli"]
    return _run([*cmd, *args], timeout)


def _run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               WANDB_MODE="disabled", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"{cmd[1:]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A synthetic inbox made with ``inboxrl make-data`` and a tiny random model."""
    root = tmp_path_factory.mktemp("cli")
    out = inboxrl("make-data", str(root / "data"), "--seed", "3", "--num-emails", "200").stdout
    assert "emails" in out
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    return {"root": root, "db": root / "data" / "emails.db", "scenarios": root / "data" / "scenarios.jsonl",
            "model": root / "tiny"}


def _common(assets, out: Path, model: bool = True) -> list[str]:
    """Data, rollout budget and seed flags (every settings verb), plus the model's (``model``)."""
    flags = ["--db-path", str(assets["db"]), "--scenarios-path", str(assets["scenarios"]),
             "--output-dir", str(out), "--max-turns", "2", "--max-tokens", "8", "--max-context-tokens", "4096",
             "--eval-dataset-size", "2", "--seed", "1"]
    return flags + (["--model-name", str(assets["model"]), "--dtype", "fp32"] if model else [])


def _train_flags() -> list[str]:
    return ["--max-steps", "1", "--num-generations", "2", "--per-device-train-batch-size", "2",
            "--train-dataset-size", "2", "--eval-steps", "1", "--save-steps", "1", "--warmup-steps", "0"]


def test_make_data_writes_a_store_and_scenarios(assets):
    with EmailStore(assets["db"]) as store:
        assert store.count() > 0
    lines = assets["scenarios"].read_text().splitlines()
    assert lines and all(json.loads(line)["message_ids"] for line in lines)


def test_build_db_maildir(tmp_path):
    src = tmp_path / "maildir"
    for n in range(3):
        for who in ("alice", "bob"):
            box = src / who / "inbox"
            box.mkdir(parents=True, exist_ok=True)
            (box / f"{n}.").write_text(MAIL.format(n=n, who=who))
    db = tmp_path / "m.db"
    out = inboxrl("build-db", str(src), "--db", str(db)).stdout
    assert "6 of 6 emails stored" in out
    with EmailStore(db) as store:
        assert store.inbox_size("alice@example.com") == 3 and store.inbox_size("bob@example.com") == 3
        assert [h.message_id for h in store.search("alice@example.com", ["quarterly", "alice"])]


def test_build_db_mbox_with_scenario_check(tmp_path):
    mbox = tmp_path / "box.mbox"
    mbox.write_text("".join("From pat@example.com Mon May 14 16:00:00 2001\n" + MAIL.format(n=n, who="carol")
                            + "\n" for n in range(4)))
    scen = tmp_path / "s.jsonl"
    scen.write_text(json.dumps({"id": "q1", "question": "Which report?", "answer": "2",
                                "message_ids": ["<2.carol@test>"], "inbox_address": "carol@example.com",
                                "query_date": "2001-06-01"}) + "\n")
    db = tmp_path / "b.db"
    out = inboxrl("build-db", str(mbox), "--db", str(db), "--scenarios", str(scen)).stdout
    assert "4 of 4 emails stored" in out and "Integrity: 0 scenarios" in out
    with EmailStore(db) as store:
        assert store.read("carol@example.com", "<2.carol@test>").subject == "Report number 2"


def test_build_db_parquet(tmp_path):
    pq.write_table(pa.table({
        "message_id": ["<p1@e>", "<p2@e>"], "subject": ["Gas", "Power"],
        "from": ["dave@enron.com", "eve@enron.com"], "to": [["carol@enron.com"], ["dave@enron.com"]],
        "cc": [[], []], "bcc": [[], []], "date": ["2001-07-01 10:00:00", "2001-07-02 10:00:00"],
        "body": ["The gas deal is done.", "Power prices spiked."], "file_name": ["d/1.", "e/1."]}),
        tmp_path / "rows.parquet")
    db = tmp_path / "p.db"
    out = inboxrl("build-db", str(tmp_path / "rows.parquet"), "--db", str(db), "--max-body-chars", "10",
                  "--order-by-date").stdout
    assert "2 of 2 emails stored" in out
    with EmailStore(db) as store:
        assert store.meta()["ids_by_date"] == "1"
        assert store.read("carol@enron.com", "<p1@e>") is not None
        assert store.read("carol@enron.com", "<p2@e>") is None


def _failing(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "inboxrl.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))


def test_build_db_bad_source_exits_2(tmp_path):
    proc = _failing("build-db", str(tmp_path / "missing"), "--db", str(tmp_path / "x.db"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_build_db_real_maildir_infers_the_owner_or_asks_for_it(tmp_path):
    box = tmp_path / "Maildir"
    for part in ("cur", "new", "tmp"):
        (box / part).mkdir(parents=True)
    for n, part in enumerate(("cur", "cur", "new")):
        (box / part / f"1700000{n}.M1P1.host:2,S").write_text(MAIL.format(n=n, who="dana"))
    out = inboxrl("build-db", str(box), "--db", str(tmp_path / "d.db")).stdout
    assert "3 of 3 emails stored" in out and "Maildir -> dana@example.com" in out
    with EmailStore(tmp_path / "d.db") as store:
        assert store.inboxes() == ["dana@example.com", "pat@example.com"]
    anon = tmp_path / "anon"
    for part in ("cur", "new", "tmp"):
        (anon / part).mkdir(parents=True)
    (anon / "cur" / "1.M1P1.host:2,S").write_text("Message-ID: <a@b>\nSubject: hi\n\nno recipients\n")
    proc = _failing("build-db", str(anon), "--db", str(tmp_path / "a.db"))
    assert proc.returncode == 2 and "pass --owner" in proc.stderr and not (tmp_path / "a.db").exists()


def _eval_only_file(assets, path: Path, n: int = 3) -> list[str]:
    """``n`` of the validation scenarios alone in a file: no training scenarios at all."""
    rows = [json.loads(line) for line in assets["scenarios"].read_text().splitlines()]
    rows = [r for r in rows if r.get("split") == "test"][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [r["id"] for r in rows]


def test_eval_reference(assets, tmp_path):
    out = inboxrl("eval-reference", *_common(assets, tmp_path / "ref", model=False)).stdout
    assert "2 validation scenarios" in out and "reference agent [read] on 2 scenarios" in out


def test_eval_reference_on_an_eval_only_scenario_file(assets, tmp_path):
    _eval_only_file(assets, tmp_path / "eval_only.jsonl")
    out = inboxrl("eval-reference", *_common(assets, tmp_path / "ref", model=False), "--scenarios-path",
                  str(tmp_path / "eval_only.jsonl"), "--eval-dataset-size", "3", "--max-turns", "10").stdout
    assert "3 validation scenarios" in out and "reference agent [read] on 3 scenarios" in out


def test_eval_tiny_model_on_an_eval_only_scenario_file(assets, tmp_path):
    out_dir = tmp_path / "eval"
    ids = _eval_only_file(assets, tmp_path / "eval_only.jsonl")
    inboxrl("eval", *_common(assets, out_dir), "--scenarios-path", str(tmp_path / "eval_only.jsonl"),
            "--eval-dataset-size", "3")
    doc = json.loads((out_dir / "eval_logs" / "eval_step_0000.json").read_text())
    assert doc["step"] == 0 and "accuracy" in doc
    assert sorted(s["scenario_id"] for s in doc["per_scenario"]) == sorted(ids)


def test_train_then_report(assets, tmp_path):
    out_dir = tmp_path / "train"
    inboxrl("train", *_common(assets, out_dir), *_train_flags(), "--wandb-mode", "disabled")
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("step") == 1 for r in rows)
    assert (out_dir / "eval_logs" / "eval_step_0001.json").is_file()
    out = inboxrl("report", str(out_dir)).stdout
    assert (out_dir / "plots" / "reward.png").is_file() and "wrote" in out
    # a second new run there: refused (its checkpoints would mix), or, with the overwrite flag, started over
    again = ["train", *_common(assets, out_dir), *_train_flags(), "--wandb-mode", "disabled"]
    proc = _failing(*again)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: output_dir {out_dir} holds an earlier run (checkpoints of steps 1): continue it with --resume, "
        "choose a new --output-dir, or pass --overwrite-output-dir to delete its outputs"]
    (out_dir / "trajectories" / "step_0009.jsonl").write_text("{}\n")  # only the earlier run had it
    out = inboxrl(*again, "--overwrite-output-dir").stdout
    assert "overwrite_output_dir: deleted the earlier run's checkpoints" in out
    assert not (out_dir / "trajectories" / "step_0009.jsonl").exists()
    assert [json.loads(line)["step"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()] == [1]


def test_train_grpo_script(assets, tmp_path):
    out_dir = tmp_path / "script"
    _run([sys.executable, str(ROOT / "train_grpo.py"), *_common(assets, out_dir), *_train_flags()], 600)
    assert (out_dir / "metrics.jsonl").is_file()


def test_sft_tiny_model(assets, tmp_path):
    out = inboxrl("sft", *_common(assets, tmp_path / "sft"), "--sft-cache-dir", str(tmp_path / "cache"),
                  "--sft-num-demos", "2", "--sft-epochs", "1", "--sft-batch-size", "2", "--sft-lora-r", "4",
                  "--sft-eval", "none", "--max-tokens", "96", "--train-dataset-size", "8", "--max-turns", "10")
    made = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(made) == 1 and (made[0] / "config.json").is_file()
    assert f"Warm-start model: {made[0]}" in out.stdout + out.stderr


@pytest.mark.parametrize("where", ["file", "proc"])
@pytest.mark.parametrize("verb", ["sft", "eval", "make-data", "build-db", "report", "view"])
def test_every_verb_refuses_an_unusable_output_dir_in_one_line(assets, tmp_path, verb, where):
    """An output directory that is a file, or cannot be created (/proc/x), stops each verb that
    writes one with one ``error:`` line and exit 2 (no traceback); ``sft`` and ``eval`` before
    the model is loaded (the model path does not exist: loading it would be another error)."""
    (tmp_path / "file").write_text("not a directory")
    bad = str(tmp_path / "file") if where == "file" else "/proc/inboxrl-x"
    mbox = tmp_path / "m.mbox"
    mbox.write_text("From a@b Mon May 14 16:00:00 2001\n" + MAIL.format(n=1, who="dana"))
    model = ["--model-name", str(tmp_path / "no-such-model")]
    args = {"sft": ["sft", *_common(assets, Path(bad), model=False), *model],
            "eval": ["eval", *_common(assets, Path(bad), model=False), *model],
            "make-data": ["make-data", bad, "--num-emails", "50"],
            "build-db": ["build-db", str(mbox), "--db", f"{bad}/x.db"],
            "report": ["report", bad], "view": ["view", bad]}[verb]
    proc = _failing(*args)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    assert bad in err[0] and "no-such-model" not in err[0]
