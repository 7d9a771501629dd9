"""Fault drill: kill -9 a tiny training run at random times from outside, resume it, and count
the runs that came back identical to an uninterrupted one.

    python bench/fault_drill.py                 # 8 random-time kills
    python bench/fault_drill.py --kills 20 --seed 3 --workdir /tmp/drill

Each trial starts the drill run (a tiny random model on a small generated inbox, 3 GRPO steps,
an eval at steps 0, 2 and the final 3, a checkpoint every step keeping 1, best evals forced at
steps 2 and 3 so ``best/`` is made and replaced and checkpoints are pruned), SIGKILLs it after a
random time, then runs ``--resume`` until it finishes (at most 3 times). A trial has
**survived** when the resumed run equals the reference run (weights and optimizer of every
listed checkpoint and of ``best/`` bit-identical, every step's metrics once with the same
values up to timings, the same evals, checkpoints and final state), **lost** otherwise;
**leftover** counts hidden temporary / trash entries still there after the resume (should be
0) and **cleaned** the ones the kill left and the resume removed.

The same machinery (:func:`make_assets`, :func:`train`, :func:`compare`) serves the named-point
drills of ``tests/test_fault_drills.py`` (``INBOXRL_FAULT``; docs/robustness.md).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

FORCED_BESTS = (2, 3)
TIMING_KEYS = {"rollout_time", "training_time", "step_time", "tokens_per_second", "eval_time"}
CHECKED_DIRS = ("", "checkpoints", "eval_logs", "trajectories")


# -- the drill run ------------------------------------------------------------------------------
def make_assets(root: Path) -> dict[str, str]:
    """A small generated inbox and a tiny random model saved under ``root``."""
    from inboxrl.synth.data import make_data
    from inboxrl.policy.tiny import make_tiny_model

    data = make_data(root / "data", seed=5, num_emails=300)
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    assets = {"db": str(data.db_path), "scenarios": str(data.scenarios_path), "model": str(root / "tiny")}
    (root / "assets.json").write_text(json.dumps(assets))
    return assets


def drill_settings(assets: dict[str, str], out: Path, **over: Any):
    from inboxrl.settings.sources import build_settings

    cli = dict(model_name=assets["model"], db_path=assets["db"], scenarios_path=assets["scenarios"],
               output_dir=str(out), max_steps=3, num_generations=2, per_device_train_batch_size=2,
               max_turns=2, max_tokens=8, max_context_tokens=4096, eval_steps=2, save_steps=1,
               keep_checkpoints=1, eval_dataset_size=2, train_dataset_size=6, dtype="fp32",
               learning_rate=5e-3, warmup_steps=0, wandb_mode="disabled", seed=7, use_lora="false")
    cli.update(over)
    return build_settings(cli={k: str(v) for k, v in cli.items()}, env={})


def _rig(trainer: Any) -> None:
    """Give the tiny model a learning signal and new best evals at ``FORCED_BESTS``.

    A tiny random model never calls a tool, so every rollout would get the same reward: the
    reward becomes the share of sampled tokens with an even id. Its greedy evals never improve
    either: steps 2 and 3 are scored as new bests (accuracy 0.12, 0.13) in the comparison only.
    """
    collect, note_eval = trainer.collect, trainer.note_eval

    def rigged_collect(self, step):
        trajectories, scenarios = collect(step)
        for t in trajectories:
            ids = [i for i, s in zip(t.token_ids, t.sources) if s == "model"]
            t.reward = sum(1 for i in ids if i % 2 == 0) / max(len(ids), 1)
        return trajectories, scenarios

    def rigged_note_eval(self, step, result):
        if step in FORCED_BESTS:
            result.stats = dict(result.stats, accuracy=0.1 + 0.01 * step)
        return note_eval(step, result)

    trainer.collect = types.MethodType(rigged_collect, trainer)
    trainer.note_eval = types.MethodType(rigged_note_eval, trainer)


def train(assets: dict[str, str], out: Path, resume: bool) -> None:
    """One drill run in this process (``resume``: from the latest checkpoint)."""
    import torch

    from inboxrl.logs.console import ConsoleLog
    from inboxrl.run.train import build_trainer

    torch.set_num_threads(1)
    trainer = build_trainer(drill_settings(assets, out), ConsoleLog(verbose=False), resume=resume)
    _rig(trainer)
    trainer.restore(resume=resume, resume_from=None, fresh=False)
    trainer.fit()


# -- comparing with the reference -----------------------------------------------------------------
def leftovers(out: Path) -> list[str]:
    """Hidden temporary / trash / superseded entries, and checkpoint dirs that are not complete."""
    from inboxrl.grpo.checkpoint import is_complete

    found = []
    for sub in CHECKED_DIRS:
        folder = out / sub
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            if p.name.startswith(".") and p.name != ".inboxrl.lock":
                found.append(f"{sub}/{p.name}".lstrip("/"))
            elif sub == "checkpoints" and not is_complete(p):
                found.append(f"checkpoints/{p.name} (incomplete)")
    return found


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line must parse


def _untimed(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in TIMING_KEYS}


def _tensors_equal(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_tensors_equal, a, b))
    return a == b


def _state(path: Path, run_dir: Path) -> Any:
    """A JSON state file with the run's own directory written as ``<run>`` (it names best/)."""
    return json.loads(path.read_text().replace(str(run_dir), "<run>"))


def _same_checkpoint(a: Path, b: Path, ref: Path, out: Path) -> str | None:
    import torch
    from safetensors.torch import load_file

    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (a / name).is_file() and not _tensors_equal(load_file(str(a / name)), load_file(str(b / name))):
            return f"{b.name}/{name} differs"
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        if not _tensors_equal(torch.load(a / name, weights_only=True), torch.load(b / name, weights_only=True)):
            return f"{b.name}/{name} differs"
    if _state(a / "trainer_state.json", ref) != _state(b / "trainer_state.json", out):
        return f"{b.name}/trainer_state.json differs"
    return None


def compare(ref: Path, out: Path) -> list[str]:
    """What differs between a drilled run and the reference run (empty: the same run)."""
    from inboxrl.grpo.checkpoint import is_complete, list_checkpoints

    problems = []
    for name in ("metrics.jsonl", "eval_metrics.jsonl"):
        try:
            got, want = _rows(out / name), _rows(ref / name)
        except json.JSONDecodeError as e:
            problems.append(f"{name}: unreadable line ({e})")
            continue
        if [r["step"] for r in got] != [r["step"] for r in want]:
            problems.append(f"{name}: steps {[r['step'] for r in got]} != {[r['step'] for r in want]}")
        elif [_untimed(r) for r in got] != [_untimed(r) for r in want]:
            problems.append(f"{name}: values differ")
    got_ck = [p.name for p in list_checkpoints(out / "checkpoints")]
    want_ck = [p.name for p in list_checkpoints(ref / "checkpoints")]
    if got_ck != want_ck:
        problems.append(f"checkpoints {got_ck} != {want_ck}")
    else:
        problems += [d for n in got_ck
                     if (d := _same_checkpoint(ref / "checkpoints" / n, out / "checkpoints" / n, ref, out))]
    if not is_complete(out / "best"):
        problems.append("best/ missing or incomplete")
    elif (d := _same_checkpoint(ref / "best", out / "best", ref, out)) is not None:
        problems.append(d)
    state = out / "trainer_state.json"
    if not state.is_file() or _state(state, out) != _state(ref / "trainer_state.json", ref):
        problems.append("final trainer_state.json differs or is missing")
    names = lambda d: sorted(p.name for p in d.iterdir()) if d.is_dir() else []  # noqa: E731
    for sub in ("trajectories", "eval_logs"):
        if names(out / sub) != names(ref / sub):
            problems.append(f"{sub}/ files {names(out / sub)} != {names(ref / sub)}")
    return problems


# -- random-time kills from outside -------------------------------------------------------------
def _child(workdir: Path, out: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", str(out), "--workdir", str(workdir)] + (["--resume"] if resume else [])
    log = open(workdir / f"{out.name}.log", "a")  # the child's stderr, for a trial that failed
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)


def _last_error(workdir: Path, out: Path) -> str:
    lines = [x for x in (workdir / f"{out.name}.log").read_text(errors="replace").splitlines() if "Error" in x]
    return lines[-1][:200] if lines else "no error line"


def _run_child(workdir: Path, out: Path, resume: bool, kill_after: float | None = None) -> tuple[int, float]:
    """Run a child to its end (or SIGKILL it ``kill_after`` s after its imports); (rc, train seconds)."""
    proc = _child(workdir, out, resume)
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": imports done
    t0 = time.monotonic()
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    rc = proc.wait()
    return rc, time.monotonic() - t0


def trial(workdir: Path, ref: Path, out: Path, kill_after: float) -> dict[str, Any]:
    rc, _ = _run_child(workdir, out, resume=False, kill_after=kill_after)
    killed = rc == -signal.SIGKILL
    left = leftovers(out)
    for _ in range(3):
        rc, _ = _run_child(workdir, out, resume=True)
        if rc == 0:
            break
    problems = compare(ref, out) if rc == 0 else [f"resume exited {rc}: {_last_error(workdir, out)}"]
    after = leftovers(out)
    return {"kill_after_s": round(kill_after, 2), "killed": killed, "left_by_kill": len(left),
            "leftover": len(after), "survived": not problems and not after, "problems": problems + after}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=8, help="trials (one random-time kill each)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    p.add_argument("--workdir", default="", help="where assets and runs go (default: a temp dir)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one drill run, killed from outside by the parent
        assets = json.loads((Path(args.workdir) / "assets.json").read_text())
        print("ready", flush=True)
        train(assets, Path(args.child), resume=args.resume)
        return 0
    import tempfile

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="inboxrl-drill-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    make_assets(workdir)
    ref = workdir / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    rc, duration = _run_child(workdir, ref, resume=False)
    if rc != 0:
        print(f"the reference run failed (exit {rc})", file=sys.stderr)
        return 1
    rnd = random.Random(args.seed)
    results = []
    for i in range(args.kills):
        out = workdir / f"trial_{i:02d}"
        shutil.rmtree(out, ignore_errors=True)
        results.append(trial(workdir, ref, out, rnd.uniform(0.0, duration)))
        r = results[-1]
        print(f"trial {i:2d}: kill after {r['kill_after_s']:6.2f} s of {duration:.1f} s "
              f"({'killed' if r['killed'] else 'finished first'}), left by the kill {r['left_by_kill']}, "
              f"{'survived' if r['survived'] else 'LOST: ' + '; '.join(r['problems'])}", flush=True)
    killed = [r for r in results if r["killed"]]
    print(f"\nkills {len(killed)} of {len(results)} trials (the others finished before their kill time)")
    print(f"survived {sum(r['survived'] for r in killed)} | lost {sum(not r['survived'] for r in killed)} | "
          f"leftover entries after resume {sum(r['leftover'] for r in results)} | "
          f"entries left by kills and cleaned {sum(r['left_by_kill'] for r in killed)}")
    return 0 if all(r["survived"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
