"""Checkpoint round trip (weights, optimizer, scheduler, RNG), LoRA adapters, keep-last-K, best."""
import json
import random

import numpy as np
import pytest
import torch

from _grpo_util import make_traj, tiny_model
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_best, save_checkpoint
from inboxrl.grpo.optim import make_optimizer, make_scheduler
from inboxrl.grpo.update import UpdateSettings, policy_update


def _trained(seed=0, model=None):
    model = model if model is not None else tiny_model(seed)
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.01)
    sched = make_scheduler(opt, warmup_steps=1, total_steps=20, kind="cosine")
    trajs = [make_traj(0, r, [0.0], rollout_index=i) for i, r in enumerate([1.0, 0.0, 0.5])]
    assign_advantages(trajs, "rollout")
    for _ in range(2):
        policy_update(model, opt, sched, trajs, UpdateSettings(), pad_id=0)
    return model, opt, sched, trajs


def test_round_trip_full_model(tmp_path):
    model, opt, sched, trajs = _trained()
    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    path = save_checkpoint(tmp_path, 2, model, opt, sched, {"data_cursor": 17, "best_metric": 0.4})
    assert path.name == "checkpoint-0002"
    assert {"optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json"} <= {p.name for p in path.iterdir()}
    expected_rng = (random.random(), np.random.rand(), torch.rand(1).item())
    # continue the original for one more step
    policy_update(model, opt, sched, trajs, UpdateSettings(), pad_id=0)
    ref_params = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2, sched2, _ = _trained(seed=1)  # different weights and optimizer state
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    state = load_checkpoint(path, model2, opt2, sched2)
    assert state == {"data_cursor": 17, "best_metric": 0.4, "step": 2}
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_rng
    assert sched2.last_epoch == 2
    policy_update(model2, opt2, sched2, trajs, UpdateSettings(), pad_id=0)  # same next step
    for k, v in model2.state_dict().items():
        assert torch.allclose(v, ref_params[k], atol=1e-6), k
    assert sched2.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"] == 3
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_round_trip_lora_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model, opt, sched, _ = _trained(model=get_peft_model(tiny_model(0), cfg))
    path = save_checkpoint(tmp_path, 1, model, opt, sched, {})
    assert (path / "adapter_model.safetensors").is_file() and not (path / "model.safetensors").exists()
    fresh = get_peft_model(tiny_model(0), cfg)
    load_checkpoint(path, fresh, make_optimizer(fresh, lr=1e-2), None)
    trained = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert trained and any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)
    loaded = fresh.state_dict()
    for k, v in trained.items():
        assert torch.equal(loaded[k], v), k


def test_keep_last_k_protects_best_and_latest(tmp_path):
    model, opt, sched, _ = _trained()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, sched, {}, keep_last=2, protect_step=2 if step >= 2 else None)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["checkpoint-0002", "checkpoint-0004", "checkpoint-0005"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-0005"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    best = save_best(tmp_path, tmp_path / "checkpoint-0004")
    assert json.loads((best / "trainer_state.json").read_text())["step"] == 4
    best = save_best(tmp_path, tmp_path / "checkpoint-0005")  # replaced atomically
    assert json.loads((best / "trainer_state.json").read_text())["step"] == 5
    assert latest_checkpoint(tmp_path).name == "checkpoint-0005"  # best/ is not a checkpoint-NNNN


def test_incomplete_checkpoints_ignored(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-0009").mkdir()  # no manifest: not a finished save
    (tmp_path / ".checkpoint-0010.tmp-x").mkdir()
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "checkpoint-0009", tiny_model(0))


def test_mismatched_weights_rejected(tmp_path):
    model, opt, sched, _ = _trained()
    path = save_checkpoint(tmp_path, 1, model, opt, sched, {})
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    with pytest.raises(ValueError, match="do not match"):
        load_checkpoint(path, other)


def test_tied_embeddings_round_trip(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    opt = make_optimizer(model, lr=1e-2)
    path = save_checkpoint(tmp_path, 3, model, opt, None, {})
    torch.manual_seed(1)
    other = LlamaForCausalLM(cfg)
    load_checkpoint(path, other)
    assert other.lm_head.weight.data_ptr() == other.model.embed_tokens.weight.data_ptr()
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
