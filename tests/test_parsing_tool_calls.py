"""parse_tool_call: accepted forms, first-call-only, and errors on malformed model text."""
import json
import time

import pytest

from inboxrl.agent.parsing import MAX_SCAN_CHARS, first_object_closed, parse_tool_call
from inboxrl.email.types import ToolCall


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "read_email", "arguments": {"message_id": "<a@b>"}}\n</tool_call>',
    'Let me read it. <tool_call>{"name": "read_email", "arguments": {"message_id": "<a@b>"}}',
    '{"name": "read_email", "arguments": {"message_id": "<a@b>"}}',
    'Sure!\n```json\n{"name": "read_email", "arguments": {"message_id": "<a@b>"}}\n```\nDone.',
    '{"name": "read_email", "parameters": {"message_id": "<a@b>"}}',
    '{"name": "read_email", "arguments": "{\\"message_id\\": \\"<a@b>\\"}"}',
    '{"type": "function", "function": {"name": "read_email", "arguments": {"message_id": "<a@b>"}}}',
])
def test_valid_forms(text):
    call, err = parse_tool_call(text)
    assert err is None
    assert call == ToolCall("read_email", {"message_id": "<a@b>"})


def test_braces_inside_strings_do_not_confuse_the_scanner():
    text = '{"name": "search_emails", "arguments": {"keywords": ["a}b", "{c\\"}"]}} trailing }'
    call, err = parse_tool_call(text)
    assert err is None and call.arguments == {"keywords": ["a}b", '{c"}']}


def test_only_first_call_is_returned():
    two_blocks = ('<tool_call>{"name": "search_emails", "arguments": {"keywords": ["x"]}}</tool_call>'
                  '<tool_call>{"name": "read_email", "arguments": {"message_id": "1"}}</tool_call>')
    assert parse_tool_call(two_blocks)[0].name == "search_emails"
    two_objects = '{"name": "read_email", "arguments": {"message_id": "1"}} {"name": "x", "arguments": {}}'
    assert parse_tool_call(two_objects)[0] == ToolCall("read_email", {"message_id": "1"})


def test_missing_arguments_mean_empty_dict():
    assert parse_tool_call('{"name": "search_emails"}') == (ToolCall("search_emails", {}), None)


@pytest.mark.parametrize("text,reason", [
    ("", "no JSON object"),
    ("I will search the inbox now.", "no JSON object"),
    ('{"name": "search_emails", "arguments": {"keywords": ["x"]', "not closed"),
    ("{'name': 'search_emails'}", "invalid JSON"),
    ('{"arguments": {"keywords": ["x"]}}', "name"),
    ('{"name": 42, "arguments": {}}', "name"),
    ('{"name": "  ", "arguments": {}}', "name"),
    ('{"name": "search_emails", "arguments": ["x"]}', "must be an object"),
    ('{"name": "search_emails", "arguments": "not json"}', "not valid JSON"),
    ('{"name": "search_emails", "arguments": "[1, 2]"}', "must be an object"),
    ("<tool_call>no json here</tool_call>", "no JSON object"),
])
def test_malformed(text, reason):
    call, err = parse_tool_call(text)
    assert call is None
    assert err.startswith("unparseable: ") and reason in err


def test_non_string_input_is_an_error_not_a_crash():
    assert parse_tool_call(None)[0] is None
    assert parse_tool_call(b"{}")[1].startswith("unparseable")


def test_huge_inputs_are_bounded():
    big_args = {"answer": "x" * 20_000, "sources": []}
    call, err = parse_tool_call(json.dumps({"name": "return_final_answer", "arguments": big_args}))
    assert err is None and len(call.arguments["answer"]) == 20_000
    start = time.perf_counter()
    call, err = parse_tool_call('{"name": "x", "arguments": {"a": "' + "y" * 5_000_000 + '"}}')
    assert call is None and "not closed" in err  # the object closes beyond MAX_SCAN_CHARS
    nested = "[" * 100_000 + "]" * 100_000
    assert parse_tool_call('{"name": "x", "arguments": {"a": ' + nested + "}}")[0] is None
    assert parse_tool_call("{" * (2 * MAX_SCAN_CHARS))[1] == "unparseable: JSON object is not closed"
    assert time.perf_counter() - start < 5.0


def test_first_object_closed():
    assert not first_object_closed('{"name": "x", "arguments": {"a": 1}')
    assert first_object_closed('{"name": "x", "arguments": {"a": 1}}')
    assert not first_object_closed('{"name": "x}"')
    assert not first_object_closed("no object")
