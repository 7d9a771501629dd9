"""Tool execution and turn boundaries with scripted model turns (forced through the logits)."""
import copy

import pytest

from _rollout_util import QWEN_TEMPLATE, SCHEMAS, FakeEnv, ScriptedModel, one_thread, scenario  # noqa: F401
from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.email.types import ToolCall
from inboxrl.policy.hf import HFPolicy, make_tiny_model

SEARCH = ToolCall("search_emails", {"keywords": ["lease"]})
READ = ToolCall("read_email", {"message_id": "<m1@x>"})
ANSWER = ToolCall("return_final_answer", {"answer": "answer 1", "sources": ["<m1@x>"]})
IDK = ToolCall("return_final_answer", {"answer": "I don't know", "sources": []})


@pytest.fixture(scope="module")
def tiny(one_thread):
    return make_tiny_model(seed=1)


def settings(**kw):
    base = dict(max_turns=4, max_new_tokens=64, progress=False, check_template=True, greedy=True)
    base.update(kw)
    return RolloutSettings(**base)


def run(tiny, renderer, scripts, reqs, **kw):
    model, tok = tiny
    policy = HFPolicy(ScriptedModel(model, tok, scripts), tok, renderer=renderer)
    return run_rollouts(policy, reqs, lambda sc: FakeEnv(sc, max_turns=4), settings(**kw))


def segments_after(traj, r, start):
    """(decoded text, source) runs from token ``start`` on."""
    runs, i = [], start
    while i < len(traj.token_ids):
        j = i
        while j < len(traj.token_ids) and traj.sources[j] == traj.sources[i]:
            j += 1
        runs.append((r.decode(traj.token_ids[i:j]), traj.sources[i]))
        i = j
    return runs


def test_plain_protocol_episode(tiny):
    r = ChatRenderer(tiny[1], SCHEMAS, few_shot=False)
    calls = [r.format_call(c) for c in (SEARCH, READ, ANSWER)]
    scripts = {"Question number 1?": calls, "Question number 2?": ["Hmm, not sure.", r.format_call(IDK)]}
    reqs = [RolloutRequest(scenario(1)), RolloutRequest(scenario(2)), RolloutRequest(scenario(3))]
    a, b, junk = run(tiny, r, scripts, reqs, max_new_tokens=48)

    assert a.finish_reason == "answered" and [t.text for t in a.turns] == calls
    assert [t.tool_call for t in a.turns] == [SEARCH, READ, ANSWER]
    assert [t.process_reward for t in a.turns] == [1.0, 1.0, 0.0]
    assert a.rubric.answer_correct and a.rubric.sources_correct
    assert a.reward == pytest.approx(1.0 + 0.3 + 0.1 * (1 - 3 / 4))
    assert a.turns[0].tool_result == '[{"message_id": "<m1@x>", "subject": "hello"}]'
    first_model = a.sources.index("model")
    runs = segments_after(a, r, first_model)
    assert runs[:6] == [(calls[0], "model"), ("<|im_end|>\n<|im_start|>tool\n", "template"),
                        (a.turns[0].tool_result, "tool"), ("<|im_end|>\n<|im_start|>assistant\n", "template"),
                        (calls[1], "model"), ("<|im_end|>\n<|im_start|>tool\n", "template")]
    assert runs[-1] == (calls[2], "model")  # the rollout ends on the model's last call
    assert [m["role"] for m in a.messages][-6:] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]

    # turn 0 ended on the end-of-turn token: it is the model's, only "\n" is template
    assert b.finish_reason == "idk" and b.reward == pytest.approx(0.0)
    assert b.turns[0].text == "Hmm, not sure." and b.turns[0].parse_error.startswith("unparseable")
    assert b.turns[0].process_reward == -1.0
    runs = segments_after(b, r, b.sources.index("model"))
    assert runs[:2] == [("Hmm, not sure.<|im_end|>", "model"), ("\n<|im_start|>tool\n", "template")]
    assert b.turns[0].num_tokens == len(r.encode("Hmm, not sure.<|im_end|>"))

    assert junk.finish_reason == "max_turns" and len(junk.turns) == 4
    alone = run(tiny, r, {}, [RolloutRequest(scenario(3))], max_new_tokens=48)[0]
    assert alone.token_ids == junk.token_ids  # rows leaving the batch do not disturb the others


def test_native_protocol_episode(tiny):
    tok = copy.deepcopy(tiny[1])
    tok.chat_template = QWEN_TEMPLATE
    r = ChatRenderer(tok, SCHEMAS, few_shot=True)
    calls = [r.format_call(c) for c in (SEARCH, ANSWER)]
    # the script continues past </tool_call>: the engine must stop there by itself
    scripts = {"Question number 1?": [c + "\nextra text" for c in calls]}
    t = run((tiny[0], tok), r, scripts, [RolloutRequest(scenario(1))])[0]
    assert t.finish_reason == "answered" and [x.text for x in t.turns] == calls
    runs = segments_after(t, r, t.sources.index("model"))
    assert runs[:4] == [(calls[0], "model"), ("<|im_end|>\n<|im_start|>user\n<tool_response>\n", "template"),
                        (t.turns[0].tool_result, "tool"),
                        ("\n</tool_response><|im_end|>\n<|im_start|>assistant\n", "template")]
    assert t.reward == pytest.approx(1.0 + 0.3 + 0.1 * (1 - 2 / 4))


def test_turn_budget_truncates_and_continues(tiny):
    r = ChatRenderer(tiny[1], SCHEMAS, few_shot=False)
    scripts = {"Question number 1?": [r.format_call(SEARCH), r.format_call(ANSWER)]}
    t = run(tiny, r, scripts, [RolloutRequest(scenario(1))], max_new_tokens=5)[0]
    assert all(x.num_tokens == 5 for x in t.turns) and t.finish_reason == "max_turns"
    assert all(x.parse_error == "unparseable: JSON object is not closed" for x in t.turns[:1])
