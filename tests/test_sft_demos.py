"""SFT demonstrations are token-identical to rollouts that make the same calls (issue 5)."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from _rollout_util import ScriptedModel

from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.email.types import ToolCall
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import make_judge
from inboxrl.email.reference_agent import ReferenceAgent, run_reference_episode
from inboxrl.email.store import EmailStore, build_store
from inboxrl.email.synth import generate
from inboxrl.policy.hf import HFPolicy, make_tiny_model
from inboxrl.sft.demos import (DemoError, DemoSettings, call_pattern, collect_demonstrations,
                               protocol_stats, render_calls)

MAX_TURNS, MAX_NEW, MAX_CTX = 4, 96, 4096


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    corpus = generate(3, 200)
    db = tmp_path_factory.mktemp("sft") / "mail.db"
    build_store(db, corpus.records, progress=False)
    store, judge = EmailStore(db), make_judge("normalized")
    train = [s for s in corpus.scenarios if s.split == "train"]
    factory = lambda sc: EmailTaskEnv(store, sc, judge, MAX_TURNS)  # noqa: E731
    return store, judge, train, factory


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model(seed=0)


def _episodes(world, n: int):
    store, judge, train, _ = world
    out = []
    for i, sc in enumerate(train):
        ep = run_reference_episode(store, sc, judge, MAX_TURNS, ReferenceAgent(random.Random(i)))
        if ep.rubric.answer_correct:
            out.append((sc, ep.calls))
        if len(out) == n:
            return out
    raise AssertionError("the reference agent solved too few scenarios")


def test_demo_is_token_identical_to_a_rollout_making_the_same_calls(world, tiny):
    model, tok = tiny
    renderer = ChatRenderer(tok)
    factory = world[3]
    episodes = _episodes(world, 3)
    demos = [render_calls(renderer, sc, calls, factory, MAX_TURNS, MAX_NEW, MAX_CTX, group_id=i)
             for i, (sc, calls) in enumerate(episodes)]
    scripts = {sc.question: [renderer.format_call(c) for c in calls] for sc, calls in episodes}
    policy = HFPolicy(ScriptedModel(model, tok, scripts), tok, renderer)
    settings = RolloutSettings(max_turns=MAX_TURNS, max_new_tokens=MAX_NEW, max_context_tokens=MAX_CTX,
                               greedy=True, progress=False, check_template=True)
    rollouts = run_rollouts(policy, [RolloutRequest(sc, group_id=i) for i, (sc, _) in enumerate(episodes)],
                            factory, settings)
    for demo, roll in zip(demos, rollouts):
        assert roll.finish_reason == "answered" and roll.rubric.answer_correct
        assert demo.token_ids == roll.token_ids
        assert demo.sources == roll.sources
        assert demo.turn_index == roll.turn_index
        assert demo.messages == roll.messages
        assert [t.to_dict() for t in demo.turns] == [t.to_dict() for t in roll.turns]
        assert demo.rubric.to_dict() == roll.rubric.to_dict()
        assert (demo.reward, demo.finish_reason) == (roll.reward, roll.finish_reason)
        assert set(demo.logprobs) == {0.0}


def test_model_tokens_are_exactly_the_formatted_calls(world, tiny):
    _, tok = tiny
    renderer = ChatRenderer(tok)
    (sc, calls), = _episodes(world, 1)
    demo = render_calls(renderer, sc, calls, world[3], MAX_TURNS, MAX_NEW, MAX_CTX)
    for k, call in enumerate(calls):
        ids = [i for i, t in zip(demo.token_ids, demo.turn_index) if t == k]
        assert renderer.decode(ids) == renderer.format_call(call)
    assert {s for s, t in zip(demo.sources, demo.turn_index) if t >= 0} == {"model"}
    assert all(t >= 0 for s, t in zip(demo.sources, demo.turn_index) if s == "model")
    # the tool results are in the sequence, as tool tokens, and never as model tokens
    first_result = demo.turns[0].tool_result
    tool_text = renderer.decode([i for i, s in zip(demo.token_ids, demo.sources) if s == "tool"])
    assert first_result in tool_text
    assert demo.sources[-1] == "model"  # the answer turn ends the trajectory


def test_budgets_reject_demos_a_rollout_would_cut(world, tiny):
    _, tok = tiny
    renderer = ChatRenderer(tok)
    (sc, calls), = _episodes(world, 1)
    longest = max(len(renderer.encode(renderer.format_call(c))) for c in calls)
    with pytest.raises(DemoError):
        render_calls(renderer, sc, calls, world[3], MAX_TURNS, longest - 1, MAX_CTX)
    with pytest.raises(DemoError):  # the episode would run out of turns before the answer
        render_calls(renderer, sc, calls, world[3], len(calls) - 1, MAX_NEW, MAX_CTX)
    with pytest.raises(DemoError):  # calls after the answer
        render_calls(renderer, sc, list(calls) + [calls[0]], world[3], 8, MAX_NEW, MAX_CTX)
    render_calls(renderer, sc, calls, world[3], MAX_TURNS, longest, MAX_CTX)  # exactly fits


def test_collect_keeps_varied_successful_demos(world, tiny):
    store, judge, train, factory = world
    renderer = ChatRenderer(tiny[1])
    settings = DemoSettings(num_demos=12, episodes_per_scenario=2, seed=1, max_turns=MAX_TURNS,
                            max_new_tokens=MAX_NEW, max_context_tokens=MAX_CTX)
    got = collect_demonstrations(store, train, judge, renderer, factory, settings)
    again = collect_demonstrations(store, train, judge, renderer, factory, settings)
    assert len(got.trajectories) == 12
    assert [t.token_ids for t in got.trajectories] == [t.token_ids for t in again.trajectories]
    assert all(t.rubric.answer_correct and t.finish_reason == "answered" for t in got.trajectories)
    assert got.attempted == 12 + got.unsuccessful + got.rejected + got.held_back
    first_searches = {str(t.turns[0].tool_call.arguments) for t in got.trajectories}
    assert len(first_searches) >= 6  # varied keyword choices
    assert sum(got.call_patterns.values()) == 12


def _collect(world, tiny, **kw):
    store, judge, train, factory = world
    base = dict(seed=1, max_turns=MAX_TURNS, max_new_tokens=MAX_NEW, max_context_tokens=MAX_CTX)
    return collect_demonstrations(store, train, judge, ChatRenderer(tiny[1]), factory,
                                  DemoSettings(**{**base, **kw}))


def test_pattern_cap_keeps_any_one_call_pattern_to_its_share(world, tiny):
    uncapped = _collect(world, tiny, num_demos=12, episodes_per_scenario=4, max_pattern_share=1.0)
    capped = _collect(world, tiny, num_demos=12, episodes_per_scenario=4, max_pattern_share=0.5)
    assert uncapped.call_patterns.most_common(1)[0][1] > 6  # the cap has something to do
    assert len(capped.trajectories) == 12 and max(capped.call_patterns.values()) <= 6
    assert len(capped.call_patterns) >= 2 and capped.held_back > 0
    assert capped.call_patterns == Counter(call_pattern(t) for t in capped.trajectories)
    assert capped.attempted == 12 + capped.unsuccessful + capped.rejected + capped.held_back


def test_pattern_cap_tops_up_from_held_back_episodes_when_attempts_run_out(world, tiny):
    wanted = 40  # more than one round of the cap allows
    got = _collect(world, tiny, num_demos=wanted, episodes_per_scenario=1, max_pattern_share=0.05)
    successes = got.attempted - got.unsuccessful - got.rejected
    assert len(got.trajectories) == min(wanted, successes)
    assert got.held_back == successes - len(got.trajectories)
    assert sum(got.call_patterns.values()) == len(got.trajectories)


def test_demo_agent_defaults_need_second_searches_and_distractor_reads(world, tiny):
    got = _collect(world, tiny, num_demos=0, episodes_per_scenario=2)
    assert got.call_patterns["search>read>answer"] < len(got.trajectories)
    assert got.call_patterns["search>search>read>answer"] > 0
    assert got.call_patterns["search>read>read>answer"] > 0
    searches = [t.tool_call for traj in got.trajectories for t in traj.turns if t.tool_call.name == "search_emails"]
    assert max(len(c.arguments["keywords"]) for c in searches) <= 4  # long lists taught endless repeats


def test_bad_pattern_share_is_refused():
    with pytest.raises(ValueError, match="max_pattern_share"):
        DemoSettings(max_pattern_share=0.0)


def test_protocol_stats_hand_computed(world, tiny):
    renderer = ChatRenderer(tiny[1])
    (sc, calls), = _episodes(world, 1)
    good = render_calls(renderer, sc, calls, world[3], MAX_TURNS, MAX_NEW, MAX_CTX)
    bad_first = render_calls(renderer, sc, [ToolCall("read_email", {"message_id": "<nope@x>"}),
                                            ToolCall("lookup", {"q": 1}),
                                            ToolCall("return_final_answer", {"answer": "x", "sources": []})],
                             world[3], MAX_TURNS, MAX_NEW, MAX_CTX)
    assert call_pattern(bad_first) == "read>invalid>answer"
    stats = protocol_stats([good, bad_first])
    n_turns = len(good.turns) + 3
    assert stats.num_turns == n_turns and stats.num_rollouts == 2
    assert stats.valid_call_rate == pytest.approx((n_turns - 1) / n_turns)
    assert stats.first_search_rate == 0.5
    assert protocol_stats([]).valid_call_rate == 0.0
