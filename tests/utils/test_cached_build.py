"""build_cached: a cached directory built once and atomically; what a SIGKILLed build left behind
is deleted by the next build of the same name (and nothing else is).

The drills kill a real child process in the middle of each user-level cache's build (warm start,
default model conversion, default dataset) and check that the next build leaves only the
finished directory and its lock.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from inboxrl.utils import cached_build as cb

ROOT = Path(__file__).resolve().parents[2]


def _complete(d: Path) -> bool:
    return (d / "done").is_file()


def _build(tmp: Path) -> None:
    (tmp / "weights").write_bytes(b"w" * 100)
    (tmp / "done").write_text("1")


def test_builds_once_then_reuses_and_leaves_only_target_and_lock(tmp_path):
    target = tmp_path / "cache" / "abc"
    assert cb.build_cached(target, _complete, _build) == (True, 0)
    assert cb.build_cached(target, _complete, lambda tmp: pytest.fail("rebuilt")) == (False, 0)
    assert sorted(p.name for p in target.parent.iterdir()) == [".abc.lock", "abc"]


def test_leftovers_of_killed_builds_are_removed_but_not_lookalikes(tmp_path):
    root = tmp_path / "cache"
    target = root / "abc"
    cb.build_cached(target, _complete, _build)
    stale = [root / ".abc.k3j_9xqz", root / ".abc.0a1b2c3d.tmp", root / ".abc.old-4242", root / ".abc.stale-17"]
    for d in stale:
        d.mkdir()
        (d / "weights").write_bytes(b"x")
    (root / ".abc.zz.tmp").write_text("file leftover of another shape")  # not ours: kept
    keep = [root / ".abcd.k3j_9xqz", root / ".abc.v2.k3j_9xqz", root / "other", root / ".abc.zz.tmp"]
    for d in keep[:3]:
        d.mkdir()
    assert cb.leftovers(target) == sorted(stale)
    assert cb.build_cached(target, _complete, lambda tmp: pytest.fail("rebuilt")) == (False, 4)
    assert not any(d.exists() for d in stale)
    assert all(d.exists() for d in keep) and _complete(target)


def test_forced_rebuild_replaces_the_target_and_a_failed_build_keeps_it(tmp_path):
    target = tmp_path / "abc"
    cb.build_cached(target, _complete, _build)

    def broken(tmp: Path) -> None:
        (tmp / "weights").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cb.build_cached(target, _complete, broken, force=True)
    assert (target / "weights").read_bytes() == b"w" * 100
    assert cb.leftovers(target) == []

    def other(tmp: Path) -> None:
        (tmp / "weights").write_bytes(b"new")
        (tmp / "done").write_text("2")

    assert cb.build_cached(target, _complete, other, force=True) == (True, 0)
    assert (target / "weights").read_bytes() == b"new" and cb.leftovers(target) == []


# One child per cache: start its real build, SIGKILL itself half way through.
KILLED_BUILDS = {
    "warm_start": """
        from inboxrl.sft.warm_start import ensure_cached
        def build(tmp):
            (tmp / "model.safetensors").write_bytes(b"x" * 4096)
            os.kill(os.getpid(), signal.SIGKILL)
        ensure_cached(root, "k" * 20, build, SimpleNamespace(info=print), "tiny")
    """,
    "default_model": """
        from inboxrl.policy import default_model as dm
        def convert(gguf, out_dir):
            (out_dir / "model.safetensors").write_bytes(b"x" * 4096)
            os.kill(os.getpid(), signal.SIGKILL)
        dm.convert_gguf = convert
        dm.find_default_gguf = lambda: root / "fake.gguf"
        dm.default_model_dir(root)
    """,
    "default_dataset": """
        from inboxrl.synth import data
        def make_data(out, **kw):
            (out / "emails.jsonl").write_text("{}")
            os.kill(os.getpid(), signal.SIGKILL)
        data.make_data = make_data
        data.ensure_default_dataset(root, num_emails=50)
    """,
}


def _kill_mid_build(kind: str, root: Path) -> None:
    code = "import os, signal, sys\nfrom pathlib import Path\nfrom types import SimpleNamespace\nroot = Path(sys.argv[1])\n"
    code += textwrap.dedent(KILLED_BUILDS[kind])
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-c", code, str(root)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _cache_dir(kind: str, root: Path) -> Path:
    if kind == "warm_start":
        return root
    if kind == "default_model":
        return root / "models"
    from inboxrl.synth.data import default_dataset_dir
    return default_dataset_dir(root, num_emails=50).parent


def _rebuild(kind: str, root: Path, monkeypatch) -> Path:
    if kind == "warm_start":
        from inboxrl.sft.warm_start import MARKER, ensure_cached
        said: list[str] = []
        path = ensure_cached(root, "k" * 20, lambda tmp: (tmp / MARKER).write_text("{}"), SimpleNamespace(info=said.append), "tiny")
        assert any("removed 1 leftover" in s for s in said), said
        return path
    if kind == "default_model":
        from inboxrl.policy import default_model as dm

        def convert(gguf, out_dir):
            for name in ("config.json", "model.safetensors", "tokenizer.json", dm.MARKER_FILE):
                (out_dir / name).write_text("{}")
        monkeypatch.setattr(dm, "convert_gguf", convert)
        monkeypatch.setattr(dm, "find_default_gguf", lambda: root / "fake.gguf")
        return dm.default_model_dir(root)
    from inboxrl.synth import data

    def make_data(out, **kw):
        (out / "emails.db").write_text("db")
        (out / "scenarios.jsonl").write_text("")
        (out / "manifest.json").write_text(json.dumps(
            {"version": data.VERSION, "num_train": 1, "num_test": 1, "seed": 1, "num_emails": 50}))
    monkeypatch.setattr(data, "make_data", make_data)
    monkeypatch.setattr(data, "_check", lambda tmp, result: None)
    return data.ensure_default_dataset(root, num_emails=50).root


@pytest.mark.parametrize("kind", sorted(KILLED_BUILDS))
def test_a_sigkilled_build_leaves_a_temp_dir_the_next_build_removes(kind, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    _kill_mid_build(kind, root)
    where = _cache_dir(kind, root)
    left = [p for p in where.iterdir() if not p.name.endswith(".lock")]
    assert len(left) == 1 and left[0].name.startswith(".") and any(left[0].iterdir()), left
    final = _rebuild(kind, root, monkeypatch)
    assert sorted(p.name for p in where.iterdir()) == sorted([final.name, f".{final.name}.lock"])
