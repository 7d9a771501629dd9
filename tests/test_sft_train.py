"""SFT training: the loss is the NLL of model tokens only, it falls, and a tiny model that
memorised a demonstration reproduces it under greedy decoding through the rollout engine."""
from __future__ import annotations

import random

import pytest
import torch

from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.email.types import ToolCall
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import make_judge
from inboxrl.email.reference_agent import ReferenceAgent
from inboxrl.email.store import EmailStore, build_store
from inboxrl.email.synth import generate
from inboxrl.policy.hf import HFPolicy, make_tiny_model
from inboxrl.sft.demos import render_calls
from inboxrl.sft.train import SFTSettings, train_sft

MAX_TURNS, MAX_NEW, MAX_CTX = 4, 96, 4096


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory):
    """A short correct demonstration on a small synthetic inbox: one search (one result) and the
    reference answer, rendered with a one-line system prompt and no few-shot example (short
    sequences, fast tests)."""
    corpus = generate(5, 200)
    db = tmp_path_factory.mktemp("sft_train") / "mail.db"
    build_store(db, corpus.records, progress=False)
    store, judge = EmailStore(db), make_judge("normalized")
    factory = lambda sc: EmailTaskEnv(store, sc, judge, MAX_TURNS)  # noqa: E731
    _, tok = make_tiny_model(seed=0)
    renderer = ChatRenderer(tok, system_prompt="Answer with one JSON tool call per turn.", few_shot=False)
    sc = next(s for s in corpus.scenarios if s.split == "train")
    keywords = ReferenceAgent(random.Random(0)).first_keywords(sc.question)
    calls = [ToolCall("search_emails", {"keywords": keywords, "max_results": 1}),
             ToolCall("return_final_answer", {"answer": sc.answer, "sources": sc.message_ids[:1]})]
    demo = render_calls(renderer, sc, calls, factory, MAX_TURNS, MAX_NEW, MAX_CTX)
    assert demo.rubric.answer_correct
    return sc, demo, renderer, factory


def _manual_nll(model, demo) -> float:
    """Mean NLL of the demo's model tokens, computed by hand from one forward pass."""
    ids = torch.tensor([demo.token_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    nll = [-float(logp[j - 1, demo.token_ids[j]]) for j in range(1, len(demo.token_ids))
           if demo.sources[j] == "model"]
    return sum(nll) / len(nll)


def test_first_step_loss_is_the_mean_nll_of_model_tokens_only(short_demo):
    _, demo, _, _ = short_demo
    model, tok = make_tiny_model(seed=1)
    expected = _manual_nll(model, demo)
    everything = torch.nn.functional.cross_entropy(
        model(input_ids=torch.tensor([demo.token_ids])).logits[0, :-1].float(),
        torch.tensor(demo.token_ids[1:])).item()
    assert abs(everything - expected) > 1e-3  # the check below can tell the two apart
    result = train_sft(model, [demo], SFTSettings(epochs=1, batch_size=1, learning_rate=1e-6,
                                                  progress=False), pad_id=tok.pad_token_id)
    assert result.steps == 1 and result.trained_tokens == demo.num_model_tokens
    assert result.losses[0] == pytest.approx(expected, rel=1e-4)


def test_steps_follow_epochs_and_batch_size(short_demo):
    _, demo, _, _ = short_demo
    model, tok = make_tiny_model(seed=2)
    settings = SFTSettings(epochs=2, batch_size=2, learning_rate=1e-5, progress=False)
    assert settings.num_steps(3) == 4  # ceil(3 / 2) per epoch
    result = train_sft(model, [demo, demo, demo], settings, pad_id=tok.pad_token_id)
    assert result.steps == 4 and len(result.losses) == 4
    assert result.trained_tokens == 6 * demo.num_model_tokens
    with pytest.raises(ValueError):
        train_sft(model, [], settings)


def test_tiny_model_memorises_a_demo_and_replays_it_greedily(short_demo):
    sc, demo, renderer, factory = short_demo
    model, tok = make_tiny_model(seed=3, hidden_size=128, intermediate_size=256)
    settings = SFTSettings(epochs=60, batch_size=1, learning_rate=3e-3, warmup_steps=2,
                           schedule="constant", progress=False)
    result = train_sft(model, [demo], settings, pad_id=tok.pad_token_id)
    assert result.losses[-1] < 0.05 * result.losses[0]
    policy = HFPolicy(model, tok, renderer)
    rollouts = run_rollouts(policy, [RolloutRequest(sc)], factory, RolloutSettings(
        max_turns=MAX_TURNS, max_new_tokens=MAX_NEW, max_context_tokens=MAX_CTX, greedy=True,
        progress=False))
    (got,) = rollouts
    assert got.token_ids == demo.token_ids
    assert got.sources == demo.sources
    assert got.finish_reason == "answered" and got.rubric.answer_correct
