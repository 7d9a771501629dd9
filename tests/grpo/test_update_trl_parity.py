"""Our token-mean GRPO gradient equals TRL's GRPOTrainer (loss_type="dapo") on the same batch."""
import copy
import tempfile

import pytest
import torch

pytest.importorskip("trl")

from inboxrl.agent.trajectory import Trajectory, Turn  # noqa: E402
from inboxrl.grpo.update import UpdateSettings, policy_update  # noqa: E402

G, P, C = 4, 6, 5


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def test_same_gradient_as_trl_grpo_trainer():
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from inboxrl.policy.tiny import make_tiny_model

    model, tok = make_tiny_model(seed=0, hidden_size=32, num_layers=1)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 1000, (1, P), generator=gen).repeat(G, 1)
    completion = torch.randint(0, 1000, (G, C), generator=gen)
    adv = torch.tensor([1.2, -0.4, 0.3, -1.1])
    old = -5.0 - torch.rand(G, C, generator=gen)  # off-policy: ratios far from 1, clipping active
    lengths = [C, C - 1, C - 3, C - 2]  # unequal lengths: token_mean differs from seq_mean
    mask = torch.tensor([[1] * n + [0] * (C - n) for n in lengths])
    trajs = []
    for i in range(G):
        t = Trajectory(scenario_id="s", rollout_index=i, turns=[Turn(0, advantage=float(adv[i]))])
        t.append(prompt[i].tolist(), "user")
        t.append(completion[i, :lengths[i]].tolist(), "model", old[i, :lengths[i]].tolist(), turn=0)
        trajs.append(t)
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    stats = policy_update(ours, torch.optim.SGD(ours.parameters(), lr=0.0), None, trajs,
                          UpdateSettings(max_grad_norm=0.0, token_budget=2 * (P + C)), pad_id=0)
    assert stats.num_micro_batches == 2 and stats.clip_fraction > 0
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(output_dir=out, per_device_train_batch_size=G, num_generations=G, max_completion_length=C,
                         loss_type="dapo", beta=0.0, epsilon=0.2, epsilon_high=0.28, gradient_checkpointing=False,
                         bf16=False, use_cpu=True, report_to="none")
        trainer = GRPOTrainer(model=theirs, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                              args=cfg, train_dataset=Dataset.from_dict({"prompt": ["x"] * G}), processing_class=tok)
        trainer._prepare_inputs = lambda batch: batch
        trainer.current_gradient_accumulation_steps = 1
        inputs = {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
                  "completion_mask": mask, "advantages": adv, "old_per_token_logps": old,
                  "num_items_in_batch": mask.sum().float()}
        trainer.training_step(trainer.model, inputs, inputs["num_items_in_batch"])
    g_ours, g_trl = _grads(ours), _grads(trainer.model)
    assert g_trl.norm() > 0
    assert torch.allclose(g_ours, g_trl, rtol=1e-4, atol=1e-7)
