"""The checkpoint store under kill -9: a complete checkpoint is listed only with its manifest,
leftovers of killed saves / prunes / installs are cleaned (or put back), best/ is re-made when a
kill lost it, and an output directory takes one run at a time."""
import json
import os

import pytest

from _fault_util import KILLED, run_forked
from _grpo_util import tiny_model
from inboxrl.grpo import checkpoint as ckpt
from inboxrl.grpo import checkpoint_store as ckpt_store
from inboxrl.grpo.checkpoint_store import CheckpointStore
from inboxrl.settings.base import ConfigError
from inboxrl.grpo.optim import make_optimizer
from inboxrl.utils.run_lock import RunLock, RunLockedError


@pytest.fixture
def parts():
    model = tiny_model(0)
    return model, make_optimizer(model, lr=1e-2)


def _entries(root):
    return sorted(p.name for p in root.iterdir())


def _save(store, step, parts, best_step=None, best=False):
    model, opt = parts
    state = {"best_step": best_step, "best_checkpoint": str(store.output_dir / "best") if best_step else None}
    return store.save(step, model, opt, None, state, best=best)


def test_manifest_lists_every_file_and_a_damaged_checkpoint_is_not_listed(tmp_path, parts):
    path = ckpt.save_checkpoint(tmp_path, 1, *parts, None, {})
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in path.iterdir()} - {"manifest.json"}
    assert ckpt.is_complete(path) and ckpt.list_checkpoints(tmp_path) == [path]
    with open(path / "optimizer.pt", "ab") as f:  # a file that is not what was written
        f.write(b"x")
    assert "optimizer.pt has" in ckpt.manifest_problem(path)
    assert ckpt.list_checkpoints(tmp_path) == []
    with pytest.raises(ckpt.CheckpointError, match="not a complete checkpoint: optimizer.pt"):
        ckpt.load_checkpoint(path, tiny_model(1))


@pytest.mark.parametrize("point,leftover,listed", [
    ("ckpt.partial", ".checkpoint-0002.tmp-", ["checkpoint-0001"]),
    ("ckpt.before_install", ".checkpoint-0002.tmp-", ["checkpoint-0001"]),
    ("ckpt.prune_renamed", ".checkpoint-0001.trash-", ["checkpoint-0002"]),
    ("ckpt.prune_partial", ".checkpoint-0001.trash-", ["checkpoint-0002"]),
])
def test_a_kill_while_saving_or_pruning_leaves_the_listing_whole_and_recover_cleans(tmp_path, parts, point,
                                                                                   leftover, listed):
    store = CheckpointStore(tmp_path, keep_last=1)
    _save(store, 1, parts)
    assert run_forked(lambda: _save(store, 2, parts), fault=point) == KILLED
    root = tmp_path / "checkpoints"
    assert any(n.startswith(leftover) for n in _entries(root)), _entries(root)
    assert [p.name for p in ckpt.list_checkpoints(root)] == listed
    for p in ckpt.list_checkpoints(root):  # whatever is listed loads
        ckpt.load_checkpoint(p, tiny_model(3), restore_rng=False)
    notes = store.open()
    assert notes and _entries(root) == listed
    store.close()


def test_a_kill_between_the_two_renames_of_a_replace_puts_the_old_one_back(tmp_path, parts):
    store = CheckpointStore(tmp_path)
    first = _save(store, 3, parts)
    weights = (first / "model.safetensors").read_bytes()
    parts[0].model.embed_tokens.weight.data += 1  # the replacement differs
    assert run_forked(lambda: _save(store, 3, parts), fault="ckpt.replace_moved") == KILLED
    root = tmp_path / "checkpoints"
    assert ckpt.list_checkpoints(root) == [] and any(".old-" in n for n in _entries(root))
    assert "restored checkpoint-0003" in " ".join(store.open())
    assert _entries(root) == ["checkpoint-0003"] and (first / "model.safetensors").read_bytes() == weights
    store.close()


@pytest.mark.parametrize("point", ["best.before_copy", "best.partial", "best.replace_moved"])
def test_best_is_remade_after_a_kill_around_its_copy(tmp_path, parts, point):
    store = CheckpointStore(tmp_path, keep_last=1)
    _save(store, 1, parts, best_step=1, best=True)
    assert ckpt.read_state(tmp_path / "best")["step"] == 1
    assert run_forked(lambda: _save(store, 2, parts, best_step=2, best=True), fault=point) == KILLED
    state = ckpt.read_state(tmp_path / "checkpoints" / "checkpoint-0002")
    assert state["best_step"] == 2
    store.open()
    note = store.ensure_best(state, extra=lambda d: (d / "tokenizer.json").write_text("{}"))
    assert note == "re-made best/ from checkpoint-0002"
    assert ckpt.read_state(tmp_path / "best")["step"] == 2 and (tmp_path / "best" / "tokenizer.json").is_file()
    assert not [n for n in _entries(tmp_path) if n.startswith(".") and n != ".inboxrl.lock"]
    assert store.ensure_best(state) is None  # nothing to do the second time
    # the best checkpoint survives pruning while it is the best
    for step in (3, 4):
        _save(store, step, parts, best_step=2)
    assert [p.name for p in ckpt.list_checkpoints(store.root)] == ["checkpoint-0002", "checkpoint-0004"]
    store.close()


def test_one_run_per_output_dir_and_a_killed_holder_frees_it(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"in use by another run \\(pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert run_forked(lambda: (RunLock(tmp_path).acquire(), os.kill(os.getpid(), 9))) == KILLED
    RunLock(tmp_path).acquire().release()  # the kernel dropped the dead holder's lock


def test_recover_removes_killed_atomic_writes_and_rewind_outputs(tmp_path):
    (tmp_path / ".config.json.abc123x_.tmp").write_text("{")  # mkstemp: 8 random characters
    (tmp_path / ".metrics.jsonl.trash-4242").write_text("")  # a killed --overwrite-output-dir
    (tmp_path / ".best.tmp-k3j9x_qz").mkdir()
    users = [".notes.old-1", ".draft.tmp", ".x.trash-12", ".plots.tmp-a", ".mine.tmp-abcdefgh"]
    for name in users:  # hidden files of the user's own, in names inboxrl does not write: kept
        (tmp_path / name).write_text("keep")
    (tmp_path / "trajectories").mkdir()
    (tmp_path / "eval_logs").mkdir()
    for s in (1, 2, 3):
        (tmp_path / "trajectories" / f"step_{s:04d}.jsonl").write_text("")
    for s in (0, 2):
        (tmp_path / "eval_logs" / f"eval_step_{s:04d}.json").write_text("{}")
        (tmp_path / "eval_logs" / f"eval_step_{s:04d}_trajectories.jsonl").write_text("")
    (tmp_path / "eval_logs" / "baseline_eval.json").write_text("{}")
    store = CheckpointStore(tmp_path)
    notes = store.open()
    for name in (".config.json.abc123x_.tmp", ".metrics.jsonl.trash-4242", ".best.tmp-k3j9x_qz"):
        assert f"removed {name}" in notes and not (tmp_path / name).exists()
    assert all((tmp_path / name).read_text() == "keep" for name in users)
    removed = store.rewind_outputs(step=2, last_eval_step=0)
    assert removed == ["trajectories/step_0003.jsonl", "eval_logs/eval_step_0002.json",
                       "eval_logs/eval_step_0002_trajectories.jsonl"]
    assert _entries(tmp_path / "eval_logs") == ["baseline_eval.json", "eval_step_0000.json",
                                                "eval_step_0000_trajectories.jsonl"]
    store.close()


def test_only_the_main_process_writes(tmp_path, parts):
    store = CheckpointStore(tmp_path, main_process=False)
    assert store.open() == [] and not store.lock.held
    assert _save(store, 1, parts) is None and not (tmp_path / "checkpoints").exists()


def _earlier_run(out, parts):
    """What a finished run leaves: checkpoints, best/, metrics, eval logs, trajectories, wandb id."""
    store = CheckpointStore(out, keep_last=2)
    _save(store, 1, parts)
    _save(store, 2, parts, best_step=2, best=True)
    for name in ("metrics.jsonl", "eval_metrics.jsonl", "wandb_run.json", "trainer_state.json", "config.json"):
        (out / name).write_text("{}\n")
    for sub, name in (("eval_logs", "eval_step_0002.json"), ("trajectories", "step_0002.jsonl"),
                      ("judge_cache", "ab.json")):
        (out / sub).mkdir(exist_ok=True)
        (out / sub / name).write_text("{}\n")


def test_a_fresh_start_on_an_earlier_run_is_refused_unless_overwrite(tmp_path, parts):
    _earlier_run(tmp_path, parts)
    before = _entries(tmp_path)
    store = CheckpointStore(tmp_path)
    with pytest.raises(ConfigError) as err:
        store.open(fresh=True)
    assert str(err.value) == (f"output_dir {tmp_path} holds an earlier run (checkpoints of steps 1, 2 and best/): "
                              "continue it with --resume, choose a new --output-dir, or pass "
                              "--overwrite-output-dir to delete its outputs")
    assert not store.lock.held and _entries(tmp_path) == [".inboxrl.lock", *before]  # untouched, unlocked
    assert CheckpointStore(tmp_path).open(fresh=False) == []  # a resume goes on
    store = CheckpointStore(tmp_path)
    store.open(fresh=True, overwrite=True)
    assert store.overwritten == ["checkpoints", "best", "metrics.jsonl", "eval_metrics.jsonl", "eval_logs",
                                 "trajectories", "wandb_run.json", "trainer_state.json"]
    assert _entries(tmp_path) == [".inboxrl.lock", "config.json", "judge_cache"]  # the judge cache is kept
    store.close()
    assert CheckpointStore(tmp_path).open(fresh=True) == []  # nothing left to refuse


def test_a_kill_in_the_middle_of_an_overwrite_leaves_nothing_listed(tmp_path, parts):
    _earlier_run(tmp_path, parts)

    def overwrite_killed_at_the_first_delete():
        ckpt_store.ckpt.remove = lambda path: os.kill(os.getpid(), 9)
        CheckpointStore(tmp_path).open(fresh=True, overwrite=True)

    assert run_forked(overwrite_killed_at_the_first_delete) == KILLED
    left = _entries(tmp_path)
    assert [n for n in left if not n.startswith(".")] == ["config.json", "judge_cache"], left
    assert any(n.startswith(".checkpoints.trash-") for n in left)
    notes = CheckpointStore(tmp_path).open(fresh=True)  # no earlier run is listed: no error, and cleaned
    assert any("removed .checkpoints.trash-" in n for n in notes)
    assert _entries(tmp_path) == [".inboxrl.lock", "config.json", "judge_cache"]
