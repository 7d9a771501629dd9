"""Scripted slips in SFT demonstrations: shown to the model, never trained on.

The reference agent's first search sometimes miscopies a keyword (``p_slip``); the slip's tokens
are ``injected`` (context only) and its turn flagged, so SFT teaches the recovery from an empty
search, not the mistake."""
from __future__ import annotations

import random

import pytest

from inboxrl.agent.chat import ChatRenderer
from inboxrl.email.judge import NormalizedJudge
from inboxrl.email.rubric import ZERO_RESULTS
from inboxrl.grpo.batching import make_micro_batches
from inboxrl.reference.agent import ReferenceAgent, run_reference_episode
from inboxrl.run.warm_start import settings_from_config
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import SFTConfig
from inboxrl.settings.sources import build_settings
from inboxrl.sft.demos import DemoSettings, call_pattern, collect_demonstrations, render_calls

from _reference_util import scenario, small_store  # noqa: F401 (fixture)
from test_sft_demos import MAX_CTX, MAX_NEW, MAX_TURNS, tiny, world  # noqa: F401 (fixtures)


def _agent(seed=0, **kw):
    return ReferenceAgent(random.Random(seed), p_full=0.0, p_broad=0.0, p_distractor_first=0.0,
                          p_max_results=0.0, **kw)


def test_miscopy_changes_one_word_the_way_a_small_model_does():
    agent = _agent()
    for seed in range(20):
        agent.rng = random.Random(seed)
        assert agent._miscopy("March") in ("January February April May June July August September "
                                           "October November December").split()
        assert agent._miscopy("2001") in ("2000", "2002")
        assert agent._miscopy("0") == "1"
        assert agent._miscopy("Q1") == "Q2" and agent._miscopy("DL-29409") == "DL-29400"
        assert agent._miscopy("PO") == "POO"
        bad = agent._miscopy("Stewart")
        assert bad != "Stewart" and bad.startswith("Stewa") and bad[5:] in ("s", "er", "en", "ey", "ing")


def test_slip_keywords_change_exactly_one_keyword_or_add_one_question_word():
    q = "What PO number was issued to Harbor Point for the March 2001 storage?"
    keywords = ["Harbor", "Point", "March", "2001"]
    seen_added, seen_changed = False, False
    for seed in range(40):
        agent = _agent(seed, max_keywords=4)
        got = agent.slip_keywords(q, list(keywords))
        assert len(got) == 4 and got != keywords
        if got[-1] in ("number", "issued"):  # added an ask word; the last keyword made room
            seen_added = True
            assert got[:3] == keywords[:3]
        else:
            seen_changed = True
            assert sum(a != b for a, b in zip(got, keywords)) == 1
    assert seen_added and seen_changed


def test_p_slip_one_makes_the_first_search_an_injected_slip_then_recovers(small_store):
    q = "What was the amount due on the Q1 2001 storage invoice from Harbor Point?"
    recovered = 0
    for seed in range(12):
        ep = run_reference_episode(small_store, scenario(q), NormalizedJudge(), MAX_TURNS,
                                   _agent(seed, p_slip=1.0, max_keywords=4))
        assert ep.injected[0] and not any(ep.injected[1:])
        assert len(ep.injected) == len(ep.calls)
        if ep.events[0] == [ZERO_RESULTS]:
            assert ep.calls[1].name == "search_emails"  # recovery: a new search, not a repeat
            assert ep.calls[1].arguments["keywords"] != ep.calls[0].arguments["keywords"]
            recovered += ep.rubric.answer_correct
    assert recovered >= 3
    # no slip without room for slip, recovery search, read and answer; none at all with p_slip=0
    short = run_reference_episode(small_store, scenario(q), NormalizedJudge(), 3, _agent(0, p_slip=1.0))
    assert not any(short.injected)
    plain = run_reference_episode(small_store, scenario(q), NormalizedJudge(), MAX_TURNS, _agent(0))
    assert not any(plain.injected)


def test_injected_turn_is_token_identical_but_untrained(world, tiny):
    store, judge, train, factory = world
    renderer = ChatRenderer(tiny[1])
    for i, sc in enumerate(train):
        ep = run_reference_episode(store, sc, judge, MAX_TURNS, _agent(i, p_slip=1.0, max_keywords=4))
        if ep.rubric.answer_correct and ep.events[0] == [ZERO_RESULTS]:
            break
    else:
        raise AssertionError("no slip was recovered from")
    plain = render_calls(renderer, sc, ep.calls, factory, MAX_TURNS, MAX_NEW, MAX_CTX)
    demo = render_calls(renderer, sc, ep.calls, factory, MAX_TURNS, MAX_NEW, MAX_CTX, injected=ep.injected)
    assert demo.token_ids == plain.token_ids and demo.messages == plain.messages
    slip_ids = renderer.encode(renderer.format_call(ep.calls[0]))
    changed = [k for k, (a, b) in enumerate(zip(demo.sources, plain.sources)) if a != b]
    assert len(changed) == len(slip_ids)
    assert {plain.sources[k] for k in changed} == {"model"} and {demo.sources[k] for k in changed} == {"injected"}
    assert [demo.token_ids[k] for k in changed] == slip_ids
    assert all(demo.turn_index[k] == -1 for k in changed)
    assert demo.num_model_tokens == plain.num_model_tokens - len(slip_ids)
    assert [t.injected for t in demo.turns] == [True] + [False] * (len(demo.turns) - 1)
    assert call_pattern(demo) == "slip>" + ">".join(call_pattern(plain).split(">")[1:])
    # the SFT loss mask covers the recovery's tokens and not the slip's
    mb, = make_micro_batches([demo], token_budget=10**6, pad_id=0, require_kept=False)
    assert int(mb.loss_mask.sum()) == demo.num_model_tokens
    first_trained = next(k for k, s in enumerate(demo.sources) if s == "model")
    assert first_trained > changed[-1]


def test_collected_slip_demos_all_recover_from_an_empty_search(world, tiny):
    store, judge, train, factory = world
    opts = {**DemoSettings().agent_options, "p_slip": 1.0}
    settings = DemoSettings(num_demos=0, episodes_per_scenario=2, seed=1, max_turns=MAX_TURNS,
                            max_new_tokens=MAX_NEW, max_context_tokens=MAX_CTX, agent_options=opts)
    got = collect_demonstrations(store, train, judge, ChatRenderer(tiny[1]), factory, settings)
    assert got.trajectories and got.slips_found > 0  # slips that found emails are dropped
    for t in got.trajectories:
        assert t.turns[0].injected and ZERO_RESULTS in t.turns[0].events
        assert t.rubric.answer_correct
    assert set(got.call_patterns) <= {"slip>search>read>answer", "slip>search>answer"}
    assert got.attempted == (len(got.trajectories) + got.unsuccessful + got.rejected + got.held_back
                             + got.slips_found)


def test_slip_probability_reaches_the_demo_agent_and_is_validated():
    demos, _ = settings_from_config(build_settings(env={"SFT_SLIP_PROB": "0.5"}))
    assert demos.agent_options["p_slip"] == 0.5
    assert SFTConfig().sft_slip_prob == 0.3
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="sft_slip_prob"):
            SFTConfig(sft_slip_prob=bad)


def test_unknown_token_source_is_refused():
    from inboxrl.agent.trajectory import Trajectory

    with pytest.raises(ValueError, match="unknown token source"):
        Trajectory("s").append([1], "mystery")
