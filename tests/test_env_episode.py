"""EmailTaskEnv on a small hand-built store: events, rubric counters, every reward branch."""
import json

import pytest

from inboxrl.email.types import Email, Scenario, ToolCall
from inboxrl.email.env import EmailTaskEnv, StepResult
from inboxrl.email.judge import NormalizedJudge, Verdict
from inboxrl.email.rubric import (FORMAT_ERROR, FOUND_REFERENCE, INVALID_READ, READ_REFERENCE,
                                  REPEATED_SEARCH, ZERO_RESULTS, outcome_reward, process_reward)
from inboxrl.email.tools import parse_result
from inboxrl.email.store import EmailStore, build_store

ALICE, BOB = "alice@corp.com", "bob@corp.com"
EMAILS = [
    (Email("<ref@corp>", "2001-03-14 09:00:00", "Fuel surcharge invoice", "vendor@fuel.com", [ALICE], [], [],
           "Hi Alice, the fuel surcharge total for February is $48,200. Please approve by Friday."), [ALICE]),
    (Email("<decoy@corp>", "2001-03-20 09:00:00", "Fuel surcharge estimate", "vendor@fuel.com", [ALICE], [], [],
           "Hi Alice, our early estimate of the fuel surcharge for March is $51,000."), [ALICE]),
    (Email("<lunch@corp>", "2001-03-02 12:00:00", "Lunch", "carol@corp.com", [ALICE], [], [],
           "Lunch on Thursday at noon?"), [ALICE]),
    (Email("<bob-only@corp>", "2001-03-10 08:00:00", "Pipeline secret", "dave@corp.com", [BOB], [], [],
           "Bob, the zebracorn pipeline deal closes at $9,999."), [BOB]),
]
MAX_TURNS = 10


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "emails.db"
    build_store(path, EMAILS, progress=False)
    with EmailStore(path) as s:
        yield s


def scenario(**kw):
    d = dict(id="s1", question="What was the fuel surcharge total for February?", answer="$48,200",
             message_ids=["<ref@corp>"], inbox_address=ALICE, query_date="2001-04-01")
    d.update(kw)
    return Scenario(**d)


def make_env(store, judge=None, **kw):
    return EmailTaskEnv(store, scenario(**kw), judge or NormalizedJudge(), MAX_TURNS)


def search(*keywords, **kw):
    return ToolCall("search_emails", {"keywords": list(keywords), **kw})


def read(mid):
    return ToolCall("read_email", {"message_id": mid})


def answer(text, sources=()):
    return ToolCall("return_final_answer", {"answer": text, "sources": list(sources)})


def test_correct_answer_path_events_and_reward(store):
    env = make_env(store)
    r1 = env.step(search("fuel", "surcharge"))
    hits = parse_result(r1.observation)
    assert [h["message_id"] for h in hits] == ["<decoy@corp>", "<ref@corp>"]  # newest first
    assert r1.events == [FOUND_REFERENCE] and not r1.done
    r2 = env.step(read("<decoy@corp>"))
    assert r2.events == [] and "$51,000" in r2.observation
    r3 = env.step(read("ref@corp"))  # brackets optional
    assert r3.events == [READ_REFERENCE]
    assert parse_result(r3.observation)["to"] == [ALICE]
    r4 = env.step(answer("The total was $48,200.", ["<ref@corp>"]))
    assert r4.done and r4.events == []
    rub = env.finish("answered")
    assert rub.answer_correct and rub.attempted_answer and rub.sources_correct
    assert rub.found_reference and rub.read_reference and not rub.returned_idk
    assert (rub.num_turns, rub.num_searches, rub.num_reads, rub.num_invalid_reads) == (4, 1, 2, 0)
    # 1.0 + 0.3 * sources + 0.1 * (1 - 4/10)
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(1.36)
    assert [process_reward(r.events) for r in (r1, r2, r3, r4)] == [1.0, 0.0, 1.0, 0.0]


def test_sources_without_brackets_count(store):
    env = make_env(store)
    env.step(answer("$48,200", ["ref@corp"]))
    rub = env.finish("answered")
    assert rub.sources_correct and rub.answer_correct
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(1.0 + 0.3 + 0.1 * 0.9)


def test_wrong_answer_reward(store):
    env = make_env(store)
    env.step(search("fuel", "surcharge"))
    env.step(read("<decoy@corp>"))
    env.step(answer("$51,000", ["<ref@corp>"]))
    rub = env.finish("answered")
    assert rub.attempted_answer and not rub.answer_correct and rub.sources_correct
    assert rub.found_reference and not rub.read_reference
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(-1.0 + 0.1 + 0.0 + 0.1)


def test_idk_reward(store):
    env = make_env(store)
    env.step(search("fuel", "surcharge"))
    res = env.step(answer("I don\u2019t know.", []))
    assert res.done
    rub = env.finish("idk")
    assert rub.returned_idk and not rub.attempted_answer and not rub.answer_correct
    assert rub.final_answer == "I don\u2019t know."
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(0.1)


def test_repeated_search_normalisation_and_counters(store):
    env = make_env(store)
    events = [env.step(c).events for c in [
        search("fuel", "surcharge", max_results=5),
        search("Surcharge", "FUEL", "fuel", max_results=2),  # same normalised args
        search("fuel", "surcharge", from_addr="vendor@fuel.com"),  # different filter: unique
        search("fuel", "surcharge", sent_after="2001-03-15"),  # different date: unique
        search("fuel", "surcharge", sent_after="2001-03-15"),  # repeat
        search("nonexistentword"),
        search("nonexistentword"),
    ]]
    assert events == [[FOUND_REFERENCE], [REPEATED_SEARCH], [], [], [REPEATED_SEARCH],
                      [ZERO_RESULTS], [REPEATED_SEARCH, ZERO_RESULTS]]
    rub = env.finish("max_turns")
    assert (rub.num_searches, rub.num_unique_searches, rub.num_repeated_searches) == (7, 4, 3)
    assert rub.num_searches == rub.num_unique_searches + rub.num_repeated_searches
    assert rub.num_zero_result_searches == 2 and rub.ran_out_of_turns
    assert [process_reward(e) for e in events] == [1.0, -0.5, 0.0, 0.0, -0.5, 0.0, -0.5]
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(0.1)  # out of turns, found


def test_inbox_scoping(store):
    env = make_env(store)
    r1 = env.step(search("zebracorn"))  # only in Bob's inbox
    assert parse_result(r1.observation) == [] and r1.events == [ZERO_RESULTS]
    r2 = env.step(read("<bob-only@corp>"))
    assert r2.events == [INVALID_READ] and "error" in json.loads(r2.observation)
    r3 = env.step(read("<never-existed@x>"))
    assert r3.events == [INVALID_READ] and not r3.done
    # Bob's scenario sees Bob's mail only
    env_bob = make_env(store, inbox_address=BOB)
    hits = parse_result(env_bob.step(search("zebracorn")).observation)
    assert [h["message_id"] for h in hits] == ["<bob-only@corp>"]
    assert parse_result(env_bob.step(search("fuel")).observation) == []
    rub = env.finish("max_turns")
    assert (rub.num_reads, rub.num_invalid_reads) == (2, 2)
    assert process_reward(r2.events) == -0.5


@pytest.mark.parametrize("call, parse_error, flag, base", [
    (None, "unparseable: no JSON object found", "cant_parse_tool_call", -2.0),
    (None, None, "cant_parse_tool_call", -2.0),
    (None, "something odd", "cant_parse_tool_call", -2.0),
    (None, "unknown_tool: send_email", "bad_tool_call_name", -1.9),
    (None, "bad_arguments: keywords", "bad_tool_call_args", -1.8),
    (ToolCall("send_email", {"to": "x"}), None, "bad_tool_call_name", -1.9),
    (ToolCall("search_emails", {"keywords": []}), None, "bad_tool_call_args", -1.8),
    (ToolCall("search_emails", {"keywords": ["x"], "inbox": BOB}), None, "bad_tool_call_args", -1.8),
    (ToolCall("read_email", {}), None, "bad_tool_call_args", -1.8),
    (ToolCall("return_final_answer", {"answer": "x"}), None, "bad_tool_call_args", -1.8),
    (ToolCall("search_emails", "not a dict"), None, "bad_tool_call_args", -1.8),
])
def test_format_errors(store, call, parse_error, flag, base):
    env = make_env(store)
    res = env.step(call, parse_error)
    assert res.events == [FORMAT_ERROR] and not res.done
    assert "error" in json.loads(res.observation)
    assert res.error.split(":")[0] in ("unparseable", "unknown_tool", "bad_arguments")
    assert process_reward(res.events) == -1.0
    env.step(search("fuel", "surcharge"))  # recovers: finds the reference
    rub = env.finish("max_turns")
    assert getattr(rub, flag) and rub.num_format_errors == 1 and rub.num_turns == 2
    others = {"cant_parse_tool_call", "bad_tool_call_name", "bad_tool_call_args"} - {flag}
    assert not any(getattr(rub, o) for o in others)
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(base + 0.1)


def test_format_error_then_correct_answer_is_scored_on_the_answer(store):
    env = make_env(store)
    env.step(None, "unparseable: garbage")
    env.step(answer("48200", ["<ref@corp>"]))
    rub = env.finish("answered")
    assert rub.cant_parse_tool_call and rub.answer_correct
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(1.0 + 0.3 + 0.1 * (1 - 2 / 10))


def test_unparseable_wins_over_other_format_errors(store):
    env = make_env(store)
    env.step(ToolCall("nope", {}))
    env.step(ToolCall("search_emails", {}))
    env.step(None, "unparseable: x")
    rub = env.finish("context_overflow")
    assert rub.context_overflow and rub.num_format_errors == 3
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(-2.0)


class ConstJudge:
    def __init__(self, verdict=None, exc=None):
        self.verdict, self.exc, self.calls = verdict, exc, []

    def judge(self, question, reference, answer):
        self.calls.append((question, reference, answer))
        if self.exc:
            raise self.exc
        return self.verdict


@pytest.mark.parametrize("judge, detail", [
    (ConstJudge(Verdict(None, "HTTP 500")), "HTTP 500"),
    (ConstJudge(exc=RuntimeError("judge down")), "RuntimeError: judge down"),
])
def test_judge_failure_is_recorded_not_raised(store, judge, detail):
    env = make_env(store, judge=judge)
    env.step(search("fuel", "surcharge"))
    res = env.step(answer("$48,200", ["<ref@corp>"]))
    assert res.done
    rub = env.finish("answered")
    assert rub.judge_error == detail and not rub.answer_correct and rub.attempted_answer
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(0.1)  # neutral: 0.1 * found


def test_judge_gets_question_reference_answer_and_idk_skips_judge(store):
    judge = ConstJudge(Verdict(True))
    env = make_env(store, judge=judge)
    env.step(answer("whatever", []))
    assert judge.calls == [(scenario().question, "$48,200", "whatever")]
    assert env.finish("answered").answer_correct
    env2 = make_env(store, judge=judge)
    env2.step(answer("I do not know", ["<ref@corp>"]))
    assert len(judge.calls) == 1 and env2.finish("idk").returned_idk


class BrokenStore:
    def search(self, *a, **kw):
        raise RuntimeError("disk gone")

    def read(self, *a, **kw):
        raise OSError("io error")


def test_store_failures_become_error_observations():
    env = EmailTaskEnv(BrokenStore(), scenario(), NormalizedJudge(), MAX_TURNS)
    r1 = env.step(search("fuel"))
    assert not r1.done and r1.events == [] and "error" in json.loads(r1.observation)
    r2 = env.step(read("<ref@corp>"))
    assert not r2.done and "error" in json.loads(r2.observation)
    rub = env.finish("error")
    assert rub.rollout_error == "RuntimeError in search_emails: disk gone"
    assert rub.num_turns == 2 and rub.num_searches == 0


def test_step_after_done_and_finish_reasons(store):
    env = make_env(store)
    env.step(answer("$48,200", []))
    after = env.step(search("fuel"))
    assert after.done and env.rubric.num_turns == 1 and env.rubric.num_searches == 0
    rub = env.finish("max_turns")  # an answered episode keeps its answer
    assert not rub.ran_out_of_turns and rub.answer_correct and not rub.sources_correct
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(1.0 + 0.0 + 0.1 * 0.9)

    env2 = make_env(store)
    assert env2.finish("error").rollout_error == "error"
    env3 = make_env(store)
    assert env3.finish("answered").rollout_error  # finishing "answered" with no answer is a harness bug
    with pytest.raises(ValueError):
        make_env(store).finish("bored")


def test_out_of_turns_property(store):
    env = EmailTaskEnv(store, scenario(), NormalizedJudge(), 2)
    env.step(search("fuel"))
    assert not env.out_of_turns
    env.step(search("lunch"))
    assert env.out_of_turns
    rub = env.finish("max_turns")
    assert rub.ran_out_of_turns and outcome_reward(rub, 2) == pytest.approx(0.1)


def test_step_result_shape():
    r = StepResult("obs", False, [])
    assert (r.observation, r.done, r.events, r.error) == ("obs", False, [], None)


def test_context_overflow_and_error_finishes_score_like_no_answer(store):
    env = make_env(store)
    env.step(search("fuel", "surcharge"))
    env.step(read("<ref@corp>"))
    rub = env.finish("context_overflow")
    assert rub.context_overflow and not rub.ran_out_of_turns and rub.final_answer is None
    assert outcome_reward(rub, MAX_TURNS) == pytest.approx(0.2)  # 0.1 found + 0.1 read
    env2 = make_env(store)
    env2.step(read("<ref@corp>"))
    rub2 = env2.finish("error")
    assert rub2.rollout_error == "error" and outcome_reward(rub2, MAX_TURNS) == pytest.approx(0.1)
