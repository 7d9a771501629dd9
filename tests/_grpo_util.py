"""Shared builders for the GRPO tests: hand-made trajectories and a tiny random Llama."""
from __future__ import annotations

import types

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.email.rubric import Rubric

VOCAB = 64


def tiny_model(seed: int = 0, vocab: int = VOCAB) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).float()


def make_traj(group_id: int, reward: float, turn_rewards: list[float] = (), judge_error: str | None = None,
              rollout_index: int = 0, model_tokens_per_turn: int = 2, seed: int = 0,
              prompt_len: int = 3) -> Trajectory:
    """A trajectory: a system prompt, then per turn model tokens followed by tool tokens."""
    g = torch.Generator().manual_seed(seed * 1000 + group_id * 10 + rollout_index)
    ids = lambda n: torch.randint(1, VOCAB, (n,), generator=g).tolist()  # noqa: E731
    t = Trajectory(scenario_id=f"s{group_id}", group_id=group_id, rollout_index=rollout_index,
                   reward=reward, rubric=Rubric(judge_error=judge_error))
    t.append(ids(prompt_len), "system")
    turns = list(turn_rewards) or [0.0]
    for i, pr in enumerate(turns):
        n = model_tokens_per_turn + (rollout_index + i) % 3
        lps = (-0.5 - torch.rand(n, generator=g)).tolist()
        t.append(ids(n), "model", lps, turn=i)
        t.append(ids(2), "tool")
        t.turns.append(Turn(index=i, process_reward=pr))
    return t


def token_parity_reward(trainer) -> None:
    """Reward = share of sampled tokens with an even id (depends on what the policy generates): a tiny
    random model never makes a valid call, so this keeps groups apart and advantages non-zero."""
    original = trainer.collect

    def collect(self, step):
        trajectories, scenarios = original(step)
        for t in trajectories:
            ids = [i for i, s in zip(t.token_ids, t.sources) if s == "model"]
            t.reward = sum(1 for i in ids if i % 2 == 0) / max(len(ids), 1)
        return trajectories, scenarios

    trainer.collect = types.MethodType(collect, trainer)
