"""ChatRenderer with two real templates: SmolLM2's (plain JSON protocol) and a Qwen2.5-style
template with native tools; segments, sources, closing markup and the check() sanity check."""
import copy
import json

import pytest

from _rollout_util import QWEN_TEMPLATE, SCHEMAS, scenario
from inboxrl.agent.chat import ChatRenderer, TemplateError
from inboxrl.agent.parsing import parse_tool_call
from inboxrl.agent.trajectory import Trajectory
from inboxrl.email.types import ToolCall
from inboxrl.policy.hf import default_tokenizer


@pytest.fixture(scope="module")
def smol():
    return ChatRenderer(default_tokenizer(), SCHEMAS)


@pytest.fixture(scope="module")
def qwen():
    tok = copy.deepcopy(default_tokenizer())
    tok.chat_template = QWEN_TEMPLATE
    return ChatRenderer(tok, SCHEMAS)


def text_of(r, segments):
    return "".join(r.decode(ids) for ids, _ in segments)


def test_plain_protocol_prompt(smol):
    assert not smol.native_tools
    sc = scenario(7, "Who signed the lease?")
    segs = smol.prompt_segments(sc)
    sources = [s for _, s in segs]
    assert sources[0] == "system" and sources[-1] == "template" and set(sources[1:-1]) == {"user"}
    # few-shot as real turns: user, (assistant, tool) x2, assistant, then the real question
    assert len(segs) == 1 + 6 + 1 + 1
    assert text_of(smol, segs) == smol.render(smol.prompt_messages(sc), add_generation_prompt=True)
    assert smol.decode(segs[-1][0]) == "<|im_start|>assistant\n"
    system = smol.decode(segs[0][0])
    for name in ("search_emails(keywords: list[string], max_results?: integer)", "read_email(",
                 "return_final_answer("):
        assert name in system
    question = smol.decode(segs[-2][0])
    assert ("Question: Who signed the lease?\nInbox: user7@example.com\nToday's date: 2001-05-01"
            in question)
    roles = [m["role"] for m in smol.prompt_messages(sc)]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "user"]


def test_format_call_round_trips(smol, qwen):
    call = ToolCall("search_emails", {"keywords": ["lease", "signed"], "max_results": 5})
    plain = smol.format_call(call)
    assert plain == '{"name": "search_emails", "arguments": {"keywords": ["lease", "signed"], "max_results": 5}}'
    native = qwen.format_call(call)
    assert native == "<tool_call>\n" + plain + "\n</tool_call>"
    assert parse_tool_call(plain) == (call, None) and parse_tool_call(native) == (call, None)
    assert smol.call_complete(plain) and not smol.call_complete(plain[:-1])
    assert qwen.call_complete(native) and not qwen.call_complete(native[:-1])


def test_stop_tokens(smol):
    tok = default_tokenizer()
    assert tok.convert_tokens_to_ids("<|im_end|>") in smol.stop_token_ids
    assert tok.eos_token_id in smol.stop_token_ids
    triggers = set(smol.stop_trigger_ids())
    assert tok.convert_tokens_to_ids("}") in triggers and tok.convert_tokens_to_ids(">") in triggers
    assert tok.convert_tokens_to_ids("hello") not in triggers


def test_plain_after_turn_segments(smol):
    obs = '[{"message_id": "<m1@x>"}]'
    segs = smol.after_turn_segments(True, obs)
    assert [(smol.decode(i), s) for i, s in segs] == [
        ("\n", "template"), ("<|im_start|>tool\n", "template"), (obs, "tool"),
        ("<|im_end|>\n", "template"), ("<|im_start|>assistant\n", "template")]
    segs = smol.after_turn_segments(False, obs)
    assert smol.decode(segs[0][0]) == "<|im_end|>\n" and segs[0][1] == "template"


def test_native_template_segments(qwen):
    assert qwen.native_tools
    segs = qwen.prompt_segments(scenario(1))
    system = qwen.decode(segs[0][0])
    assert segs[0][1] == "system" and "<tools>" in system and '"name": "return_final_answer"' in system
    assert qwen.decode(segs[2][0]).startswith("<|im_start|>assistant\n<tool_call>\n{")
    obs = '{"status": "ok"}'
    assert [(qwen.decode(i), s) for i, s in qwen.after_turn_segments(False, obs)] == [
        ("<|im_end|>\n", "template"), ("<|im_start|>user\n<tool_response>\n", "template"),
        (obs, "tool"), ("\n</tool_response><|im_end|>\n", "template"),
        ("<|im_start|>assistant\n", "template")]


def build_trajectory(r, turn_texts, observations, eos_after=False):
    """Assemble a trajectory the way the engine does (model tokens = encoded turn texts)."""
    sc = scenario(3)
    traj = Trajectory("s3")
    traj.messages = r.prompt_messages(sc)
    for ids, src in r.prompt_segments(sc):
        traj.append(ids, src)
    eos = r.encode("<|im_end|>")
    for k, text in enumerate(turn_texts):
        traj.append(r.encode(text) + (eos if eos_after else []), "model", turn=k)
        traj.messages.append({"role": "assistant", "content": text})
        if k < len(observations):
            for ids, src in r.after_turn_segments(eos_after, observations[k]):
                traj.append(ids, src)
            traj.messages.append({"role": "tool", "content": observations[k]})
    return traj


@pytest.mark.parametrize("which,eos", [("smol", True), ("smol", False), ("qwen", False)])
def test_check_accepts_faithful_trajectories(which, eos, request):
    r = request.getfixturevalue(which)
    calls = [r.format_call(ToolCall("search_emails", {"keywords": ["x"]})),
             r.format_call(ToolCall("return_final_answer", {"answer": "a", "sources": []}))]
    traj = build_trajectory(r, calls, ['[{"message_id": "<m1@x>", "subject": "hi"}]'], eos)
    assert r.check(traj) is None


def test_check_reports_mismatches(smol):
    calls = [smol.format_call(ToolCall("search_emails", {"keywords": ["x"]})), "done"]
    traj = build_trajectory(smol, calls, ['[{"message_id": "<m1@x>"}]'])
    tool_pos = traj.sources.index("tool")
    bad = Trajectory.from_dict(traj.to_dict())
    bad.token_ids[tool_pos + 1] = smol.encode(" zebra")[0]
    problem = smol.check(bad)
    assert problem is not None and "mismatch at token" in problem and "source tool" in problem
    bad = Trajectory.from_dict(traj.to_dict())
    bad.messages[-2]["content"] = "something else"  # the chat view disagrees with the tokens
    assert "mismatch" in smol.check(bad)
    short = Trajectory.from_dict(traj.to_dict())
    short.token_ids = short.token_ids[:tool_pos]
    assert "ends early" in smol.check(short)


def test_check_tolerates_bpe_boundary_differences(smol):
    traj = build_trajectory(smol, ["hello world"], [])
    canonical = smol.encode("hello world")
    split = smol.encode("hel") + smol.encode("lo world")
    assert split != canonical
    model_at = traj.sources.index("model")
    traj.token_ids[model_at:] = split
    traj.sources[model_at:] = ["model"] * len(split)
    assert smol.check(traj) is None


def test_template_without_chat_template_is_rejected():
    tok = copy.deepcopy(default_tokenizer())
    tok.chat_template = None
    with pytest.raises(TemplateError):
        ChatRenderer(tok, SCHEMAS)


def test_observation_rewritten_by_template_is_all_tool():
    tok = copy.deepcopy(default_tokenizer())
    tok.chat_template = tok.chat_template.replace("message['content']", "message['content'] | upper")
    r = ChatRenderer(tok, SCHEMAS)
    segs = r.after_turn_segments(False, "abc")
    assert ("<|im_start|>tool\nABC<|im_end|>\n", "tool") in [(r.decode(i), s) for i, s in segs]
    assert json.loads(r.format_call(ToolCall("a", {}))) == {"name": "a", "arguments": {}}
