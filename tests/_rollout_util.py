"""Shared helpers for the chat / rollout tests: a fake environment with the EmailTaskEnv
interface, a tool schema list, a Qwen2.5-style native-tools chat template, and a model wrapper
that forces scripted assistant turns through the logits."""
from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from inboxrl.email.types import Scenario, ToolCall
from inboxrl.email.env import StepResult
from inboxrl.email.judge import is_idk
from inboxrl.email.rubric import FORMAT_ERROR, FOUND_REFERENCE, READ_REFERENCE, Rubric

SCHEMAS = [
    {"type": "function", "function": {"name": "search_emails", "description": "Search the inbox.",
     "parameters": {"type": "object", "properties": {
         "keywords": {"type": "array", "items": {"type": "string"}},
         "max_results": {"type": "integer"}}, "required": ["keywords"]}}},
    {"type": "function", "function": {"name": "read_email", "description": "Read one email.",
     "parameters": {"type": "object", "properties": {"message_id": {"type": "string"}},
                    "required": ["message_id"]}}},
    {"type": "function", "function": {"name": "return_final_answer", "description": "Answer.",
     "parameters": {"type": "object", "properties": {
         "answer": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
         "required": ["answer", "sources"]}}},
]

QWEN_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def scenario(i: int, question: str | None = None) -> Scenario:
    return Scenario(id=f"s{i}", question=question or f"Question number {i}?", answer=f"answer {i}",
                    message_ids=[f"<m{i}@x>"], inbox_address=f"user{i}@example.com",
                    query_date="2001-05-01")


class FakeEnv:
    """EmailTaskEnv-shaped: search finds the reference, read reads it, an answer ends it."""

    def __init__(self, scenario: Scenario, max_turns: int = 4, fail_on_step: int | None = None):
        self.scenario, self.max_turns, self.fail_on_step = scenario, max_turns, fail_on_step
        self.rubric = Rubric()
        self.calls: list[Any] = []
        self.finish_reason: str | None = None

    def step(self, call: ToolCall | None, parse_error: str | None = None) -> StepResult:
        self.rubric.num_turns += 1
        self.calls.append(call if call is not None else parse_error)
        if self.fail_on_step is not None and self.rubric.num_turns == self.fail_on_step:
            raise RuntimeError("boom in env")
        if call is None:
            self.rubric.cant_parse_tool_call = True
            self.rubric.num_format_errors += 1
            return StepResult(json.dumps({"error": parse_error}), False, [FORMAT_ERROR], parse_error)
        ref = self.scenario.message_ids[0]
        if call.name == "search_emails":
            self.rubric.found_reference = True
            return StepResult(json.dumps([{"message_id": ref, "subject": "hello"}]), False,
                              [FOUND_REFERENCE])
        if call.name == "read_email":
            self.rubric.read_reference = True
            return StepResult(json.dumps({"message_id": ref, "body": "the answer is 42"}), False,
                              [READ_REFERENCE])
        if call.name == "return_final_answer":
            ans = call.arguments.get("answer", "")
            self.rubric.final_answer = ans
            self.rubric.returned_idk = is_idk(ans)
            self.rubric.attempted_answer = not self.rubric.returned_idk
            self.rubric.answer_correct = ans == self.scenario.answer
            self.rubric.sources_correct = ref in call.arguments.get("sources", [])
            self.finish_reason = "idk" if self.rubric.returned_idk else "answered"
            return StepResult('{"status": "answer recorded"}', True)
        self.rubric.bad_tool_call_name = True
        return StepResult('{"error": "unknown tool"}', False, [FORMAT_ERROR], "unknown_tool: x")

    def finish(self, reason: str) -> Rubric:
        self.rubric.ran_out_of_turns = reason == "max_turns"
        self.rubric.context_overflow = reason == "context_overflow"
        return self.rubric


class ScriptedModel(torch.nn.Module):
    """Wraps a causal LM; for rows whose conversation contains a scripted question, the logits
    force the scripted assistant turn texts (turn k = number of tool results after the question),
    each followed by ``end_text``. Keeps per-slot histories from the engine's cache plan (which
    slots a forward feeds, from which length, how many real tokens), the shared prefix (the
    cache's first forward) and its slot drops."""

    def __init__(self, model: Any, tokenizer: Any, scripts: dict[str, list[str]], end_text: str = "<|im_end|>"):
        super().__init__()
        self.inner, self.tok, self.scripts, self.end_text = model, tokenizer, scripts, end_text
        self.config = model.config
        self.histories: dict[int, list[int]] = {}
        self._cache = None
        self.gen_prompt = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)

    def _follow(self, cache: Any) -> None:
        if cache is self._cache:
            return
        self._cache, self.histories, self.prefix = cache, {}, None
        original = cache.select

        def select(idx: torch.Tensor) -> None:
            self.histories = {new: self.histories.get(old, []) for new, old in enumerate(idx.tolist())}
            original(idx)
        cache.select = select

    def _forced(self, history: list[int]) -> int | None:
        text = self.tok.decode(history, skip_special_tokens=False)
        for question, turns in self.scripts.items():
            at = text.rfind(question)
            if at < 0:
                continue
            k = text[at:].count("<|im_start|>tool") + text[at:].count("<tool_response>")
            if k >= len(turns):
                return None
            g = len(self.gen_prompt)
            last = max(i for i in range(len(history) - g + 1) if history[i:i + g] == self.gen_prompt)
            done = history[last + g:]
            target = self.tok.encode(turns[k] + self.end_text, add_special_tokens=False)
            return target[len(done)] if len(done) < len(target) else None
        return None

    def forward(self, input_ids=None, attention_mask=None, cache=None, **kw):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kw)
        self._follow(cache)
        for r, (slot, start, size) in enumerate(zip(cache.plan_rows, cache.plan_starts, cache.plan_sizes)):
            base = self.histories.get(slot, [])
            if len(base) < start:  # the slot starts from the shared prefix, copied in by the engine
                base = self.prefix
            history = base[:start] + input_ids[r, :size].tolist()
            if self.prefix is None:  # the first forward of a cache computes the shared prefix
                self.prefix = history
            self.histories[slot] = history
            tok = self._forced(history)
            if tok is not None:
                out.logits[r, -1, :] = -30.0
                out.logits[r, -1, tok] = 30.0
        return out


@pytest.fixture(scope="module", autouse=False)
def one_thread():
    """Tiny-model forwards are dominated by thread start-up on a shared CPU: use one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
