"""The batched KV-cached rollout engine on a tiny random model: recorded log-probs, per-token
sources, cache vs no-cache, context budget, seeding, error isolation."""
import pytest
import torch

from _rollout_util import SCHEMAS, FakeEnv, one_thread, scenario  # noqa: F401
from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.hf_engine import HFEngine
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.policy.hf import HFPolicy, make_tiny_model


@pytest.fixture(scope="module")
def policy(one_thread):
    model, tok = make_tiny_model(seed=0)
    return HFPolicy(model, tok, renderer=ChatRenderer(tok, SCHEMAS, few_shot=False))


def requests(n=4):
    # questions of different lengths: the rows' prompts differ, so chunks are left-padded
    return [RolloutRequest(scenario(i, "Where is it" + " really" * (3 * i) + "?"), i // 2, i % 2)
            for i in range(n)]


def settings(**kw):
    base = dict(max_turns=3, max_new_tokens=12, max_context_tokens=1024, progress=False,
                check_template=True)
    base.update(kw)
    return RolloutSettings(**base)


def env_factory(sc):
    return FakeEnv(sc, max_turns=3)


def teacher_forced_logp(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


@pytest.fixture(scope="module")
def sampled(policy):
    return run_rollouts(policy, requests(), env_factory, settings(seed=3))


def test_recorded_logprobs_match_one_teacher_forced_pass(policy, sampled):
    for traj in sampled:
        logp = teacher_forced_logp(policy.model, traj.token_ids)
        model_pos = [i for i, s in enumerate(traj.sources) if s == "model"]
        assert model_pos and model_pos[0] > 0
        for i in model_pos:
            assert abs(logp[i - 1, traj.token_ids[i]].item() - traj.logprobs[i]) < 1e-4
        assert all(traj.logprobs[i] == 0.0 for i, s in enumerate(traj.sources) if s != "model")


def test_sources_mark_exactly_the_sampled_tokens(policy, sampled):
    r = policy.renderer
    for traj in sampled:
        assert len(traj.token_ids) == len(traj.sources) == len(traj.logprobs) == len(traj.turn_index)
        assert traj.finish_reason == "max_turns" and len(traj.turns) == 3
        assert traj.num_model_tokens == sum(t.num_tokens for t in traj.turns)
        for t in traj.turns:
            ids = [tok for tok, k in zip(traj.token_ids, traj.turn_index) if k == t.index]
            assert len(ids) == t.num_tokens and 1 <= t.num_tokens <= 12
            if ids[-1] in r.stop_token_ids:
                ids = ids[:-1]
            assert r.decode(ids) == t.text
        assert [s for s in traj.sources[:3]] == ["system"] * 3
        # a model turn is always followed by template markup (never tool or user directly)
        for a, b in zip(traj.sources, traj.sources[1:]):
            if a == "model" and b != "model":
                assert b == "template"
        assert r.check(traj) is None


def test_greedy_cache_matches_no_cache_reference(policy):
    trajs = run_rollouts(policy, requests(), env_factory, settings(greedy=True))
    lengths = {len(t.token_ids) for t in trajs}
    assert len(lengths) > 1
    for traj in trajs:
        logp = teacher_forced_logp(policy.model, traj.token_ids)
        for i, s in enumerate(traj.sources):
            if s == "model":
                best = logp[i - 1].max().item()
                assert logp[i - 1, traj.token_ids[i]].item() > best - 1e-4, f"position {i}"
    alone = run_rollouts(policy, requests(), env_factory, settings(greedy=True, batch_size=1))
    assert [t.token_ids for t in alone] == [t.token_ids for t in trajs]


def test_seeded_reproducibility(policy, sampled):
    again = run_rollouts(policy, requests(), env_factory, settings(seed=3))
    assert [t.token_ids for t in again] == [t.token_ids for t in sampled]
    assert [t.logprobs for t in again] == [t.logprobs for t in sampled]
    other = run_rollouts(policy, requests(), env_factory, settings(seed=4))
    assert [t.token_ids for t in other] != [t.token_ids for t in sampled]
    # two rollouts of the same scenario in a group differ (per-rollout generators)
    same = [RolloutRequest(scenario(0), 0, 0), RolloutRequest(scenario(0), 0, 1)]
    a, b = run_rollouts(policy, same, env_factory, settings(seed=3))
    assert a.token_ids != b.token_ids


@pytest.mark.parametrize("batch_size", [1, 3])
def test_sampled_tokens_do_not_depend_on_batch_size(policy, sampled, batch_size):
    """Per-rollout generators: the same seeds give the same tokens alone, in batches that are
    refilled as rollouts finish (3 slots for 4 requests), or all together."""
    got = run_rollouts(policy, requests(), env_factory, settings(seed=3, batch_size=batch_size))
    assert [t.token_ids for t in got] == [t.token_ids for t in sampled]
    for a, b in zip(got, sampled):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert (a.group_id, a.rollout_index) == (b.group_id, b.rollout_index)


def test_decode_steps_decode_and_refill_keeps_the_batch_full(policy):
    engine = HFEngine(policy, settings(seed=5, batch_size=2), lambda t: None)
    trajs = engine.run(requests(4), env_factory)
    st = engine.stats
    assert engine.generated_tokens == sum(t.num_model_tokens for t in trajs)
    # every generated token is sampled once: by a decode step or as the first token of a turn
    turns = sum(len(t.turns) for t in trajs)
    assert st.decode_rows + turns == engine.generated_tokens
    # every token but a rollout's last enters the cache exactly once: prefilled, decoded, or
    # copied in with the shared prefix (4 rollouts through 2 slots: all 4 start from it)
    assert st.prefix_tokens == 4 * engine.prefix_len > 0
    assert st.prefill_tokens + st.decode_rows + st.prefix_tokens == sum(t.num_tokens - 1 for t in trajs)
    # refill: 2 rows decode together until the queue is empty
    assert st.mean_decode_rows > 1.5 and st.prefill_forwards <= turns


def test_context_budget(policy):
    prompt_len = sum(len(ids) for ids, _ in policy.renderer.prompt_segments(requests(1)[0].scenario))
    # room for 8 generated tokens: the first turn is cut at 8, then the tool result cannot fit
    t = run_rollouts(policy, requests(1), env_factory,
                     settings(greedy=True, max_context_tokens=prompt_len + 8))[0]
    assert t.finish_reason == "context_overflow" and t.rubric.context_overflow
    assert len(t.turns) == 1 and t.turns[0].num_tokens == 8
    assert len(t.token_ids) == prompt_len + 8
    assert t.reward == pytest.approx(-2.0)  # unparseable call, never answered
    # a prompt that does not fit at all
    t = run_rollouts(policy, requests(1), env_factory, settings(max_context_tokens=prompt_len))[0]
    assert t.finish_reason == "context_overflow" and t.turns == [] and t.num_model_tokens == 0
    # every trajectory respects the budget
    for t in run_rollouts(policy, requests(), env_factory, settings(max_context_tokens=prompt_len + 60)):
        assert len(t.token_ids) <= prompt_len + 60 + 20  # prompts differ by up to 18 tokens
        assert t.finish_reason in ("context_overflow", "max_turns")


def test_failure_is_isolated_to_its_rollout(policy):
    def factory(sc):
        if sc.id == "s1":
            return FakeEnv(sc, fail_on_step=2)
        if sc.id == "s2":
            raise OSError("no inbox")
        return FakeEnv(sc)
    trajs = run_rollouts(policy, requests(), factory, settings(greedy=True))
    assert [t.finish_reason for t in trajs] == ["max_turns", "error", "error", "max_turns"]
    assert "boom in env" in trajs[1].rubric.rollout_error and len(trajs[1].turns) == 2
    assert "no inbox" in trajs[2].rubric.rollout_error and trajs[2].token_ids == []


def test_engine_restores_training_mode_and_counts(policy):
    policy.model.train()
    engine = HFEngine(policy, settings(greedy=True), lambda t: None)
    trajs = engine.run(requests(2), env_factory)
    assert policy.model.training
    policy.model.eval()
    assert engine.generated_tokens == sum(t.num_model_tokens for t in trajs)
    # one forward per decoding step over all rows: far fewer calls than tokens generated
    assert engine.forward_calls <= engine.generated_tokens // 2 + 3


def test_invalid_settings():
    with pytest.raises(ValueError):
        RolloutSettings(temperature=0.0)
    with pytest.raises(ValueError):
        RolloutSettings(top_p=0.0)
    assert run_rollouts(object(), [], env_factory) == []


def test_peft_model(policy):
    import copy

    from inboxrl.policy.hf import LoraSpec, apply_lora

    lora = apply_lora(copy.deepcopy(policy.model), LoraSpec(r=4, target_modules=["q_proj", "v_proj"]))
    peft_policy = HFPolicy(lora, policy.tokenizer, renderer=policy.renderer)
    got = run_rollouts(peft_policy, requests(2), env_factory, settings(greedy=True, max_turns=2))
    base = run_rollouts(policy, requests(2), env_factory, settings(greedy=True, max_turns=2))
    # a fresh LoRA adapter (B = 0) leaves the function unchanged
    assert [t.token_ids for t in got] == [t.token_ids for t in base]
    logp = teacher_forced_logp(lora, got[0].token_ids)
    i = got[0].sources.index("model")
    assert abs(logp[i - 1, got[0].token_ids[i]].item() - got[0].logprobs[i]) < 1e-4
