"""Integration: the rollout engine with the real EmailTaskEnv over a small synthetic store."""
import pytest

from _rollout_util import ScriptedModel, one_thread  # noqa: F401
from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.email.types import ToolCall
from inboxrl.email import synth
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import make_judge
from inboxrl.email.rubric import FOUND_REFERENCE, READ_REFERENCE
from inboxrl.email.store import EmailStore, build_store
from inboxrl.policy.hf import HFPolicy, make_tiny_model


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    corpus = synth.generate(seed=0, num_emails=200)
    db = tmp_path_factory.mktemp("store") / "emails.db"
    build_store(db, corpus.records, progress=False)
    return EmailStore(db), corpus


def test_scripted_agent_against_real_env(world):
    store, corpus = world
    sc, fact = corpus.scenarios[0], corpus.facts[0]
    model, tok = make_tiny_model(seed=2)
    r = ChatRenderer(tok)  # the real TOOL_SCHEMAS
    ref = sc.message_ids[0]
    calls = [ToolCall("search_emails", {"keywords": fact.keywords}),
             ToolCall("read_email", {"message_id": ref}),
             ToolCall("return_final_answer", {"answer": sc.answer, "sources": [ref]})]
    scripts = {sc.question: [r.format_call(c) for c in calls]}
    policy = HFPolicy(ScriptedModel(model, tok, scripts), tok, renderer=r)
    judge = make_judge("normalized")
    other = corpus.scenarios[1]
    reqs = [RolloutRequest(sc, 0, 0), RolloutRequest(other, 1, 0)]
    settings = RolloutSettings(max_turns=4, max_new_tokens=96, greedy=True, progress=False,
                               max_context_tokens=4000,
                               check_template=True)
    good, junk = run_rollouts(policy, reqs, lambda s: EmailTaskEnv(store, s, judge, 4), settings)

    assert good.finish_reason == "answered", [t.parse_error for t in good.turns]
    assert good.rubric.answer_correct and good.rubric.sources_correct
    assert FOUND_REFERENCE in good.turns[0].events and READ_REFERENCE in good.turns[1].events
    assert ref in good.turns[0].tool_result and sc.answer in good.turns[1].tool_result
    assert good.reward == pytest.approx(1.0 + 0.3 + 0.1 * (1 - 3 / 4))
    assert [t.process_reward for t in good.turns] == [1.0, 1.0, 0.0]
    assert junk.finish_reason == "max_turns" and junk.rubric.ran_out_of_turns
    assert junk.reward == pytest.approx(-2.0) and junk.rubric.num_format_errors == 4
