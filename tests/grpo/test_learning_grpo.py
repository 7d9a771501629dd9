"""Proof that the GRPO update learns: a tiny random model on a single-turn synthetic task.

Task: after a random 4-token prompt the model samples 6 tokens; the reward is the fraction of them
that belong to a target subset (8 of 32 tokens, so a uniform policy scores ~0.25). Rollouts are
sampled with a minimal torch sampler written here (not the rollout engine) and go through the real
pipeline: Trajectory objects → assign_advantages (groups of G) → policy_update (real loss). The
same run with the advantage sign flipped must not improve.
"""
import time

import torch

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.grpo.optim import make_optimizer
from inboxrl.grpo.update import UpdateSettings, policy_update
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB, PROMPT, COMPLETION, GROUPS, G, STEPS = 32, 4, 6, 4, 8, 16
TARGET = set(range(8, 16))


@torch.no_grad()
def sample(model, prompts: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling at temperature 1 (no cache: the sequences are tiny); ids and log-probs."""
    ids = prompts
    lps = []
    for _ in range(COMPLETION):
        logp = torch.log_softmax(model(input_ids=ids).logits[:, -1].float(), -1)
        nxt = torch.multinomial(logp.exp(), 1, generator=gen)
        lps.append(logp.gather(-1, nxt))
        ids = torch.cat([ids, nxt], dim=1)
    return ids[:, PROMPT:], torch.cat(lps, dim=1)


def rollouts(model, gen: torch.Generator) -> list[Trajectory]:
    prompts = torch.randint(0, VOCAB, (GROUPS, PROMPT), generator=gen).repeat_interleave(G, dim=0)
    model.eval()
    completions, logprobs = sample(model, prompts, gen)
    trajs = []
    for row in range(GROUPS * G):
        toks = completions[row].tolist()
        t = Trajectory(scenario_id=f"p{row // G}", group_id=row // G, rollout_index=row % G,
                       reward=sum(tok in TARGET for tok in toks) / COMPLETION, turns=[Turn(0)])
        t.append(prompts[row].tolist(), "user")
        t.append(toks, "model", logprobs[row].tolist(), turn=0)
        trajs.append(t)
    return trajs


def train(flip: bool) -> list[float]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    opt = make_optimizer(model, lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    settings = UpdateSettings(token_budget=512)
    curve = []
    for _ in range(STEPS):
        trajs = rollouts(model, gen)
        curve.append(sum(t.reward for t in trajs) / len(trajs))
        assign_advantages(trajs, "rollout")
        if flip:
            for t in trajs:
                t.turns[0].advantage = -t.turns[0].advantage
        stats = policy_update(model, opt, None, trajs, settings, pad_id=0)
        assert not stats.skipped or stats.skip_reason == "no trainable tokens"
    return curve


def test_grpo_learns_and_flipped_sign_does_not():
    start = time.perf_counter()
    learn = train(flip=False)
    control = train(flip=True)
    first, last = sum(learn[:4]) / 4, sum(learn[-4:]) / 4
    c_first, c_last = sum(control[:4]) / 4, sum(control[-4:]) / 4
    print(f"learn {first:.3f} -> {last:.3f}; control {c_first:.3f} -> {c_last:.3f}; "
          f"{time.perf_counter() - start:.1f}s")
    assert learn[0] == control[0]  # same seed: the same first batch from the same initial policy
    assert last > first + 0.3 and last > 0.7  # clearly learns (measured: 0.23 -> 0.99 over 16 steps)
    assert c_last < c_first + 0.02  # the flipped sign does not (it unlearns the target instead)
