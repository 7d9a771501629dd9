"""ensure_warm_start: a merged, reloadable checkpoint, cached by settings, eval files written."""
from __future__ import annotations

import json

import pytest
import torch

from inboxrl.email.store import build_store
from inboxrl.email.synth import generate
from inboxrl.logs.console import ConsoleLog
from inboxrl.policy.hf import load_model, make_tiny_model
from inboxrl.run.data import RunData
from inboxrl.cli import SFT_SECTIONS
from inboxrl.run import warm_start as run_ws
from inboxrl.settings.sections import Settings
from inboxrl.settings.sources import build_settings
from inboxrl.sft import warm_start as ws


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    corpus = generate(7, 200)
    build_store(root / "mail.db", corpus.records, progress=False)
    train = [s for s in corpus.scenarios if s.split == "train"][:6]
    val = [s for s in corpus.scenarios if s.split != "train"][:1]
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    data = RunData(db_path=root / "mail.db", train=train, validation=val, source="test inbox")
    return root, data


def _cfg(root, **kw) -> Settings:
    base = dict(model_name=str(root / "base"), output_dir=str(root / "out"),
                sft_cache_dir=str(root / "cache"),
                sft_num_demos=2, sft_epochs=1, sft_batch_size=2, sft_use_lora=True, sft_lora_r=4, sft_learning_rate=1e-2,
                sft_eval="none", max_tokens=96, max_context_tokens=4096, dtype="fp32")
    base.update(kw)
    return build_settings(SFT_SECTIONS, cli={k: str(v) for k, v in base.items()}, env={})


def test_warm_start_is_a_merged_model_and_is_cached(setup, monkeypatch):
    root, data = setup
    cfg = _cfg(root, sft_eval="after")
    console = ConsoleLog()
    path = run_ws.ensure_warm_start(cfg, data, console)
    assert (path / ws.MARKER).is_file() and path.parent == root / "cache"
    assert not (path / "adapter_config.json").exists()  # merged, not an adapter
    model, _ = load_model(path, dtype="fp32", device="cpu")
    base, _ = load_model(root / "base", dtype="fp32", device="cpu")
    w, w0 = model.state_dict(), base.state_dict()
    assert w.keys() == w0.keys()
    changed = [k for k in w if not torch.equal(w[k], w0[k])]
    assert changed and all("proj" in k for k in changed)  # LoRA targets only, merged in
    info = json.loads((path / ws.MARKER).read_text())
    assert info["report"]["num_demos"] == 2 and info["report"]["before"] is None
    assert (root / "out" / "sft" / "eval_logs" / "eval_step_0001.json").is_file()
    assert "valid_call_rate" in info["report"]["after"]["protocol"]

    def boom(*a, **k):
        raise AssertionError("a cached warm start must not be rebuilt")
    monkeypatch.setattr(run_ws, "_build", boom)
    assert run_ws.ensure_warm_start(cfg, data, console) == path  # reused
    with pytest.raises(AssertionError):
        run_ws.ensure_warm_start(cfg, data, console, force=True)
    assert (path / ws.MARKER).is_file()  # a failed rebuild leaves the cached one in place
    other = _cfg(root, sft_eval="after", sft_learning_rate=2e-2)
    assert ws.warm_start_key(run_ws.key_settings(other), data, str(root / "base"))[0] != path.name
    assert not any(p.name.startswith(".") and p.is_dir() for p in (root / "cache").iterdir())


def test_key_depends_on_data_and_model(setup):
    root, data = setup
    cfg = _cfg(root)
    key, _ = ws.warm_start_key(run_ws.key_settings(cfg), data, str(root / "base"))
    fewer = RunData(db_path=data.db_path, train=data.train[:3], validation=data.validation,
                    source=data.source)
    assert ws.warm_start_key(run_ws.key_settings(cfg), fewer, str(root / "base"))[0] != key
    assert ws.warm_start_key(run_ws.key_settings(cfg), data, "some/other-model")[0] != key
    assert ws.warm_start_key(run_ws.key_settings(_cfg(root)), data, str(root / "base"))[0] == key
    for changed in (dict(sft_slip_prob=0.0), dict(sft_epochs=2), dict(sft_max_pattern_share=0.25)):
        assert ws.warm_start_key(run_ws.key_settings(_cfg(root, **changed)), data, str(root / "base"))[0] != key, changed
