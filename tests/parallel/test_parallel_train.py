"""Data-parallel training end to end: ``torchrun --nproc_per_node 2`` (gloo, CPU, tiny model).

The 2-process run of the golden tiny run (``tests/_golden_run.py``: fixed seed, parity reward,
evals and checkpoints) must reproduce the recorded 1-process outputs: the same sampled
trajectories and eval files, the same metrics (floats to 1e-4 relative: after an update the two
runs differ by float summation order), one metrics line per step, one eval JSON per eval, every
group's console block exactly once. Resume of a 2-process run is bit-identical to the
uninterrupted run; a resume with another number of processes stops with one message (exit 2); a
rank that raises ends the job non-zero, naming the rank, within a time limit. With ``FSDP=true``
(parameters sharded) the 2-process run reproduces the same outputs, its checkpoints have the
one-process format (and load into a plain model and optimizer), and its resume is bit-identical.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _dist_util import free_port
from _golden_run import strip
from inboxrl.grpo.checkpoint import list_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fault_drill  # noqa: E402

HERE = Path(__file__).resolve().parents[1]  # tests/
ROOT = HERE.parent
LIMIT_S = 420


def _env(**extra) -> dict:
    keep = ("PATH", "HOME", "PYTHONPATH", "INBOXRL_CACHE", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in keep}
    return dict(env, OMP_NUM_THREADS="1", **extra)


def torchrun(args: list[str], nproc: int = 2, timeout: float = LIMIT_S, **env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    return subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def dp_run(work: Path, variant: str, out: Path, *extra: str, nproc: int = 2, timeout: float = LIMIT_S, **env):
    script = [str(HERE / "_dp_run.py"), "train", str(work), variant, str(out), *extra]
    if nproc == 1:
        return subprocess.run([sys.executable, *script], env=_env(**env), capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    return torchrun(script, nproc=nproc, timeout=timeout, **env)


def outputs(out: Path) -> dict:
    subprocess.run([sys.executable, str(HERE / "_dp_run.py"), "collect", str(out)], env=_env(), check=True,
                   timeout=120)
    return json.loads((out / "outputs.json").read_text())


def differences(got, want, path="$") -> list[str]:
    """As in test_refactor_golden, with floats to 1e-4 relative (1e-6 absolute)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}: keys {sorted(set(got) ^ set(want))} differ"] if set(got) != set(want) else []
        return out + [d for k in sorted(set(got) & set(want)) for d in differences(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: length {len(got)} != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6) else [f"{path}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{path}: {got!r} != {want!r}"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("dp")
    subprocess.run([sys.executable, str(HERE / "_dp_run.py"), "prepare", str(w)], env=_env(), check=True,
                   timeout=300)
    return w


@pytest.fixture(scope="module")
def masked_run(work):
    """The golden masked run (2 steps, eval at 0 and 2, verbose) on 2 processes, a checkpoint per step."""
    out = work / "masked2"
    proc = dp_run(work, "masked", out, "SAVE_STEPS=1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, proc


def test_two_processes_reproduce_the_one_process_run(masked_run):
    out, proc = masked_run
    want = json.loads((HERE / "golden" / "refactor_masked.json").read_text())
    got = outputs(out)
    diffs = differences(got, want)
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:10])
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2]
    assert sorted(p.name for p in (out / "eval_logs").glob("eval_step_*[0-9].json")) == [
        "eval_step_0000.json", "eval_step_0002.json"]
    assert "beat_rate" in json.loads((out / "eval_logs" / "eval_step_0002.json").read_text())


def test_console_shows_every_group_once_from_rank_zero(masked_run):
    out, proc = masked_run
    text = proc.stdout
    for step in (1, 2):
        block = text.split(f"Step {step}/2")[1].split(f"Group Summary (step {step})")[0]
        assert sorted(re.findall(r"^Group (\d+) \[", block, re.M)) == ["0", "1"]
    assert [text.count(f"Group Summary (step {s})") for s in (1, 2)] == [1, 1]
    assert text.count("Data: ") == 1 and text.count("Data parallel: 2 processes") == 1
    assert "Traceback" not in proc.stderr


def test_resume_of_two_processes_is_bit_identical(masked_run, work):
    out, _ = masked_run
    first = out / "checkpoints" / "checkpoint-0001"
    assert (first / "rng_ranks.pt").is_file()
    resumed = work / "resumed2"
    proc = dp_run(work, "masked", resumed, "SAVE_STEPS=1", DP_RESUME_FROM=str(first))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Resumed from" in proc.stdout
    a = load_file(out / "checkpoints" / "checkpoint-0002" / "adapter_model.safetensors")
    b = load_file(resumed / "checkpoints" / "checkpoint-0002" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    step2 = lambda d: strip([json.loads(x) for x in (d / "trajectories" / "step_0002.jsonl").open()])  # noqa: E731
    assert step2(resumed) == step2(out)  # the same sampled tokens and log-probs, bit for bit


@pytest.fixture(scope="module")
def fsdp_run(work):
    """The golden masked run on 2 processes with the parameters sharded (FSDP2), a checkpoint per step."""
    out = work / "fsdp2"
    proc = dp_run(work, "masked", out, "SAVE_STEPS=1", "FSDP=true")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("FSDP: parameters sharded over 2 ranks") == 1
    return out


def test_fsdp_two_processes_reproduce_the_one_process_run(fsdp_run):
    want = json.loads((HERE / "golden" / "refactor_masked.json").read_text())
    diffs = differences(outputs(fsdp_run), want)
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:10])
    assert [json.loads(r)["step"] for r in (fsdp_run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_fsdp_kl_run_reproduces_the_one_process_run(work):
    """The golden rollout run (LoRA with beta > 0: the KL reference is the adapter-disabled model,
    run on the gathered weights; 2 iterations, 2 accumulated batches, seq_mean) with FSDP."""
    out = work / "fsdp2_kl"
    proc = dp_run(work, "rollout", out, "FSDP=true")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    want = json.loads((HERE / "golden" / "refactor_rollout.json").read_text())
    # every rank packs its own groups: the step's micro-batches (summed over ranks) may be more
    diffs = [d for d in differences(outputs(out), want) if ".num_micro_batches:" not in d]
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:10])
    assert [json.loads(r)["kl"] > 0 for r in (out / "metrics.jsonl").read_text().splitlines()] == [True, True]


def test_fsdp_checkpoint_has_the_one_process_format(fsdp_run, masked_run, work):
    import torch

    from inboxrl.grpo.checkpoint import load_checkpoint
    from inboxrl.grpo.optim import make_optimizer
    from inboxrl.policy.loading import LoraSpec, load_model

    sharded, replicated = (d / "checkpoints" / "checkpoint-0002" for d in (fsdp_run, masked_run[0]))
    assert sorted(p.name for p in sharded.iterdir()) == sorted(p.name for p in replicated.iterdir())
    a, b = (load_file(d / "adapter_model.safetensors") for d in (sharded, replicated))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    # the same weights up to float summation order (amplified by Adam over 2 steps: ~1e-5 relative)
    assert all(float((a[k] - b[k]).norm() / b[k].norm()) < 1e-4 for k in a)
    oa, ob = (torch.load(d / "optimizer.pt", weights_only=True) for d in (sharded, replicated))
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    # a plain one-process model and optimizer load it (the run's LoRA settings: r 16, alpha 32)
    model, _ = load_model(json.loads((work / "env.json").read_text())["MODEL_NAME"], dtype="fp32",
                          device="cpu", lora=LoraSpec(r=16, alpha=32))
    optimizer = make_optimizer(model, lr=1e-3)
    load_checkpoint(sharded, model, optimizer, restore_rng=False)
    loaded = {n.replace(".default", ""): p for n, p in model.named_parameters() if p.requires_grad}
    assert len(loaded) == len(a) and all(loaded[k].detach().equal(a[k]) for k in a)
    state = optimizer.state_dict()["state"]
    assert all(state[i]["exp_avg"].equal(oa["state"][i]["exp_avg"]) for i in oa["state"])


def test_fsdp_resume_is_bit_identical(fsdp_run, work):
    import torch

    resumed = work / "fsdp2_resumed"
    proc = dp_run(work, "masked", resumed, "SAVE_STEPS=1", "FSDP=true",
                  DP_RESUME_FROM=str(fsdp_run / "checkpoints" / "checkpoint-0001"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Resumed from" in proc.stdout
    a, b = (load_file(d / "checkpoints" / "checkpoint-0002" / "adapter_model.safetensors") for d in (fsdp_run, resumed))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    oa, ob = (torch.load(d / "checkpoints" / "checkpoint-0002" / "optimizer.pt", weights_only=True)
              for d in (fsdp_run, resumed))
    assert all(oa["state"][i][k].equal(ob["state"][i][k]) for i in oa["state"] for k in oa["state"][i])


def test_a_kill_of_rank_0_while_checkpointing_then_a_two_rank_resume_equals_the_run(masked_run, work):
    """Rank 0 SIGKILLs itself with the step-2 checkpoint written but not installed: the job ends
    non-zero (torchrun stops rank 1, bounded by the subprocess timeout: it must not hang); a
    2-rank ``--resume`` (from checkpoint-0001) then equals the uninterrupted 2-rank run: every
    checkpoint bit-identical (weights, optimizer, scheduler, RNG of each rank), each metrics step
    once with the same values, nothing left over."""
    ref, _ = masked_run
    out = work / "killed2"
    proc = dp_run(work, "masked", out, "SAVE_STEPS=1", INBOXRL_FAULT="ckpt.before_install:2", timeout=180)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert any(p.name.startswith(".checkpoint-0002.tmp-") for p in (out / "checkpoints").iterdir())
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-0001"]
    proc = dp_run(work, "masked", out, "SAVE_STEPS=1", DP_RESUME="1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Resumed from" in proc.stdout and "checkpoint-0001" in proc.stdout
    names = [p.name for p in list_checkpoints(out / "checkpoints")]
    assert names == [p.name for p in list_checkpoints(ref / "checkpoints")]
    for name in names:
        a, b = ref / "checkpoints" / name, out / "checkpoints" / name
        assert fault_drill._same_checkpoint(a, b, ref, out) is None, name
        assert fault_drill._tensors_equal(torch.load(a / "rng_ranks.pt", weights_only=True),
                                          torch.load(b / "rng_ranks.pt", weights_only=True)), name
    for name in ("metrics.jsonl", "eval_metrics.jsonl"):
        got, want = fault_drill._rows(out / name), fault_drill._rows(ref / name)
        assert [r["step"] for r in got] == [r["step"] for r in want]
        assert [fault_drill._untimed(r) for r in got] == [fault_drill._untimed(r) for r in want], name
    assert fault_drill.leftovers(out) == []


def test_resume_with_another_number_of_processes_stops(masked_run, work):
    out, _ = masked_run
    proc = dp_run(work, "masked", work / "one", nproc=1,
                  DP_RESUME_FROM=str(out / "checkpoints" / "checkpoint-0001"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "written by a run of 2 process(es), this run has 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_ranks_resuming_a_one_process_checkpoint_stop_with_one_message(work):
    """Every rank finds the mismatch; rank 0 alone reports it (no per-rank failure lines), every
    rank exits 2 and torchrun then fails the job."""
    one = work / "one_process"
    first = dp_run(work, "masked", one, "MAX_STEPS=1", nproc=1)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = dp_run(work, "masked", work / "two_of_one", "MAX_STEPS=1",
                  DP_RESUME_FROM=str(one / "checkpoints" / "checkpoint-0001"))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "written by a run of 1 process(es), this run has 2" in errors[0], proc.stderr[-3000:]
    assert "torchrun --nproc_per_node" not in errors[0] and "one process (python train_grpo.py" in errors[0]
    assert " failed: " not in proc.stderr.replace("ChildFailedError", "")
    assert re.search(r"exitcode\s*:\s*2", proc.stderr), proc.stderr[-3000:]


def test_a_failing_rank_ends_the_job(work):
    proc = dp_run(work, "masked", work / "failing", DP_FAIL_RANK="1")  # bounded by LIMIT_S (timeout)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: injected failure on rank 1" in proc.stderr
    assert not list((work / "failing").glob("checkpoints/checkpoint-*"))


def accelerate_launch(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=LIMIT_S, cwd=ROOT)


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate", "torchrun --fsdp"])
def test_train_grpo_on_two_ranks(work, tmp_path, launcher):
    """The README commands: torchrun --nproc_per_node 2 train_grpo.py (also with --fsdp true) and
    accelerate launch --multi_gpu --num_processes 2 train_grpo.py (tiny model, 1 step) train with
    2 ranks."""
    settings = json.loads((work / "env.json").read_text())
    out = tmp_path / "run"
    launch = accelerate_launch if launcher == "accelerate" else torchrun
    fsdp = ["--fsdp", "true"] if launcher.endswith("--fsdp") else []
    proc = launch([str(ROOT / "train_grpo.py"), "--mode", "masked", "--model-name", settings["MODEL_NAME"],
                     "--db-path", settings["DB_PATH"], "--scenarios-path", settings["SCENARIOS_PATH"],
                     "--output-dir", str(out), "--max-steps", "1", "--eval-steps", "1",
                     "--per-device-train-batch-size", "3", "--num-generations", "2", "--max-turns", "1",
                     "--max-tokens", "8", "--eval-dataset-size", "3", "--train-dataset-size", "6",
                     "--dtype", "fp32", "--verbose", *fsdp])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert (out / "eval_logs" / "eval_step_0001.json").is_file()
    assert sorted(re.findall(r"^Group (\d+) \[", proc.stdout, re.M)) == ["0", "1", "2"]
    assert proc.stdout.count("Data parallel: 2 processes (cpu)") == 1
    assert (out / "checkpoints" / "checkpoint-0001" / "rng_ranks.pt").is_file()
    assert (out / "checkpoints" / "checkpoint-0001" / "adapter_model.safetensors").is_file()
    assert ("FSDP: parameters sharded over 2 ranks" in proc.stdout) == bool(fsdp)
