"""The scripted reference agent: accuracy on a small generated corpus, behaviour on a
hand-built store, and the eval_reference summary."""
import io
import json
import random

import pytest

from inboxrl.email.judge import NormalizedJudge
from inboxrl.email.rubric import FOUND_REFERENCE, READ_REFERENCE, ZERO_RESULTS, outcome_reward
from inboxrl.email.store import EmailStore
from inboxrl.email.store_build import build_store
from inboxrl.email.types import Scenario, ToolCall
from inboxrl.reference.agent import IDK, ReferenceAgent, run_reference_episode
from inboxrl.reference.evaluate import evaluate_reference_agent, format_summary, print_summary, summarize
from inboxrl.synth.generate import generate

from _reference_util import ME, scenario, small_store  # noqa: F401 (fixture)

MAX_TURNS = 10


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory):
    corpus = generate(seed=11, num_emails=800)
    path = tmp_path_factory.mktemp("synth") / "emails.db"
    build_store(path, corpus.records, progress=False)
    test = [s for s in corpus.scenarios if s.split == "test"]
    assert len(test) >= 30
    return path, test


def test_read_mode_accuracy_and_snippet_baseline(corpus_db):
    path, test = corpus_db
    read = summarize(evaluate_reference_agent(path, test, NormalizedJudge(), MAX_TURNS, "read", 0))
    snip = summarize(evaluate_reference_agent(path, test, NormalizedJudge(), MAX_TURNS, "snippet", 0))
    assert read.accuracy >= 0.9, read
    assert read.found >= 0.9 and read.read >= 0.9 and read.sources >= 0.9
    assert snip.accuracy <= read.accuracy - 0.3, (snip, read)
    assert snip.read == 0.0 and snip.avg_searches == 1.0


def test_episodes_are_deterministic_and_consistent(corpus_db):
    path, test = corpus_db
    a = evaluate_reference_agent(path, test[:15], NormalizedJudge(), MAX_TURNS, "read", seed=3)
    b = evaluate_reference_agent(path, test[:15], NormalizedJudge(), MAX_TURNS, "read", seed=3)
    assert [[c.to_dict() for c in e.calls] for e in a] == [[c.to_dict() for c in e.calls] for e in b]
    for e in a:
        assert e.reward == pytest.approx(outcome_reward(e.rubric, MAX_TURNS))
        assert len(e.calls) == len(e.observations) == len(e.events) == e.rubric.num_turns
        assert e.calls[-1].name == "return_final_answer" and e.finish_reason in ("answered", "idk")
        assert e.rubric.num_format_errors == 0


def test_demonstrations_vary_across_seeds(corpus_db):
    path, test = corpus_db
    runs = [evaluate_reference_agent(path, test, NormalizedJudge(), MAX_TURNS, "read", seed=s)
            for s in (0, 1)]
    first_kw = [[json.dumps(e.calls[0].arguments) for e in run] for run in runs]
    assert sum(x != y for x, y in zip(*first_kw)) >= len(test) // 4
    episodes = runs[0] + runs[1]
    assert any(e.rubric.num_searches >= 2 for e in episodes)  # broadened or refined
    assert any(e.rubric.num_reads >= 2 for e in episodes)  # read a distractor first


def test_print_summary(corpus_db):
    path, test = corpus_db
    eps = evaluate_reference_agent(path, test[:5], NormalizedJudge(), MAX_TURNS, "read", 0)
    buf = io.StringIO()
    s = print_summary(eps, "read", file=buf)
    line = buf.getvalue()
    assert s.episodes == 5 and "accuracy" in line and "[read]" in line and "searches" in line
    assert summarize([]).accuracy == 0.0


def test_reads_distractor_first_then_the_reference(small_store):
    agent = ReferenceAgent(random.Random(0), p_full=0.0, p_broad=1.0, p_distractor_first=1.0)
    # broad keywords of two or three of the specific terms; all members share "Harbor Point"
    agent.first_keywords = lambda q, roomy=True: ["Harbor", "invoice"]
    ep = run_reference_episode(small_store, scenario(), NormalizedJudge(), MAX_TURNS, agent)
    reads = [c.arguments["message_id"] for c in ep.calls if c.name == "read_email"]
    assert reads[-1] == "<q1@x>" and len(reads) == 2 and reads[0] != "<q1@x>"
    assert ep.calls[-1].arguments == {"answer": "$31,250", "sources": ["<q1@x>"]}
    assert ep.rubric.answer_correct and ep.rubric.sources_correct
    assert ep.events[0] == [FOUND_REFERENCE] and READ_REFERENCE in ep.events[2]
    # 1.0 + 0.3 + 0.1 * (1 - 4/10)
    assert ep.reward == pytest.approx(1.36)


def test_zero_results_then_broadens(small_store):
    agent = ReferenceAgent(random.Random(0), p_full=1.0, p_distractor_first=0.0, p_max_results=0.0)
    ep = run_reference_episode(small_store, scenario(), NormalizedJudge(), MAX_TURNS, agent)
    assert ep.calls[0].arguments["keywords"] == ["amount", "due", "Q1", "2001", "storage", "invoice",
                                                 "Harbor", "Point"]
    # every word is in the reference email, so the full query already finds it
    assert ep.events[0] == [FOUND_REFERENCE] and ep.rubric.answer_correct
    q = "What fixed amount was agreed for the Q1 2001 storage invoice from Harbor Point?"
    ep2 = run_reference_episode(small_store, scenario(q), NormalizedJudge(), MAX_TURNS,
                                ReferenceAgent(random.Random(0), p_full=1.0, p_distractor_first=0.0))
    assert ep2.events[0] == [ZERO_RESULTS]  # "fixed" and "agreed" are in no email
    assert ep2.rubric.num_searches == 2 and ep2.rubric.answer_correct
    assert ep2.rubric.num_repeated_searches == 0


def test_idk_when_nothing_matches(small_store):
    q = "What is the deal number of the Zanzibar propane deal?"
    ep = run_reference_episode(small_store, scenario(q, "DL-1"), NormalizedJudge(), MAX_TURNS,
                               ReferenceAgent(random.Random(0)))
    assert ep.calls[-1].arguments == {"answer": IDK, "sources": []}
    assert ep.rubric.returned_idk and ep.finish_reason == "idk" and ep.reward == 0.0
    assert ep.rubric.num_repeated_searches == 0 and ep.rubric.num_turns <= MAX_TURNS


def test_answers_on_the_last_turn(small_store):
    agent = ReferenceAgent(random.Random(0), p_full=0.0, p_broad=0.0)
    call = agent.act(scenario(), [], turns_left=1)
    assert call.name == "search_emails"  # nothing learned yet: the first turn always searches
    hist = [(call, json.dumps([{"message_id": "<q1@x>", "subject": "s", "from": "f", "date": "d",
                                "snippet": "x"}]))]
    last = agent.act(scenario(), hist, turns_left=1)
    assert last == ToolCall("return_final_answer", {"answer": IDK, "sources": []})


def test_max_turns_episode(small_store):
    ep = run_reference_episode(small_store, scenario(), NormalizedJudge(), 1, ReferenceAgent(random.Random(0)))
    assert ep.finish_reason == "max_turns" and ep.rubric.ran_out_of_turns
    assert ep.reward == pytest.approx(0.1)  # found the reference, no answer


def test_snippet_mode_answers_from_first_hit(small_store):
    agent = ReferenceAgent(random.Random(0), mode="snippet", p_full=0.0, p_broad=0.0)
    ep = run_reference_episode(small_store, scenario(), NormalizedJudge(), MAX_TURNS, agent)
    assert [c.name for c in ep.calls] == ["search_emails", "return_final_answer"]
    assert ep.rubric.num_reads == 0
    with pytest.raises(ValueError):
        ReferenceAgent(random.Random(0), mode="guess")


def test_summary_counts_tool_errors(corpus_db):
    path, test = corpus_db

    class Broken:
        def search(self, *a, **kw):
            raise RuntimeError("disk gone")

        def read(self, *a, **kw):
            raise RuntimeError("disk gone")

    ep = run_reference_episode(Broken(), test[0], NormalizedJudge(), 3, ReferenceAgent(random.Random(0)))
    s = summarize([ep], "read")
    assert s.rollout_errors == 1 and s.accuracy == 0.0 and ep.rubric.returned_idk
    assert "TOOL ERRORS 1" in format_summary(s)


def test_cli_main_on_configured_data(corpus_db, tmp_path, capsys):
    import argparse

    from inboxrl.cli import EVAL_REFERENCE_SECTIONS
    from inboxrl.run.env import make_run_judge
    from inboxrl.run.reference import run_eval_reference
    from inboxrl.settings.sections import JudgeConfig
    from inboxrl.settings.sources import build_settings
    from inboxrl.email.judge import LLMJudge
    from inboxrl.email.judge_pool import ConcurrentJudge
    from inboxrl.synth.generate import write_scenarios

    path, test = corpus_db
    scen = write_scenarios(test + [Scenario("tr1", "q?", "a", ["<x>"], ME, "2001-01-01", split="train")],
                           tmp_path / "scenarios.jsonl")
    cfg = build_settings(EVAL_REFERENCE_SECTIONS, env={}, cli=dict(
        db_path=str(path), scenarios_path=str(scen), max_turns=10, eval_dataset_size=20,
        output_dir=str(tmp_path / "out")))
    assert run_eval_reference(argparse.Namespace(agent_mode="read"), cfg) == 0
    out = capsys.readouterr().out
    assert "20 validation scenarios" in out and "reference agent [read] on 20 scenarios" in out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy >= 0.9
    llm = JudgeConfig(judge="llm", judge_base_url="http://127.0.0.1:9/v1", judge_model="m", judge_timeout=3.0,
                      judge_retries=1, judge_step_budget=30.0, judge_concurrency=2)
    j = make_run_judge(llm, tmp_path / "out")  # the LLM judge on a thread pool, off the decoding path
    assert isinstance(j, ConcurrentJudge) and (j.workers, j.budget_s) == (2, 30.0)
    assert isinstance(j.inner, LLMJudge) and str(j.inner.cache_dir).endswith("judge_cache")
    assert (j.inner.timeout, j.inner.retries) == (3.0, 1)


def test_plans_within_a_small_turn_budget(small_store):
    agent = ReferenceAgent(random.Random(0), p_full=1.0, p_distractor_first=1.0)
    first = agent.act(scenario(), [], turns_left=4)
    kw = first.arguments["keywords"]  # no risky full-question query with 4 turns
    assert "amount" not in kw and set(kw) <= {"Q1", "2001", "Harbor", "Point", "storage", "invoice"}
    roomy = ReferenceAgent(random.Random(0), p_full=1.0).act(scenario(), [], turns_left=6)
    assert "amount" in roomy.arguments["keywords"]
    ep = run_reference_episode(small_store, scenario(), NormalizedJudge(), 3, agent)
    # with 2 turns left after the search there is no room for a distractor read
    assert [c.name for c in ep.calls] == ["search_emails", "read_email", "return_final_answer"]
    assert ep.rubric.answer_correct


def test_max_keywords_bounds_every_search(corpus_db):
    path, test = corpus_db
    store = EmailStore(path)
    lengths = {None: [], 3: []}
    for cap in lengths:
        for i, sc in enumerate(test[:30]):
            agent = ReferenceAgent(random.Random(i), p_full=0.6, roomy_turns=4, max_keywords=cap)
            ep = run_reference_episode(store, sc, NormalizedJudge(), 4, agent)
            lengths[cap] += [len(c.arguments["keywords"]) for c in ep.calls if c.name == "search_emails"]
        if cap is not None:
            ladder = agent.keyword_ladder(test[0].question)
            assert all(len(kw) <= cap for kw in ladder) and len(ladder) == len({tuple(k) for k in ladder})
    assert max(lengths[None]) > 3  # the whole-question choice is long without the cap
    assert max(lengths[3]) <= 3
