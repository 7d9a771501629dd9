"""Token-faithful chat rendering with the model's own chat template (issue 3 §2).

:class:`ChatRenderer` turns a scenario and the turns of a rollout into token-id *segments*, each
tagged with the source that produced it (``system``, ``user``, ``tool``, ``template``; the
rollout engine adds the ``model`` tokens it samples). Every segment is the string delta between
two renders of a growing message list with ``apply_chat_template(tokenize=False)``, tokenised on
its own: model-sampled ids are never re-tokenised.

Sources:

* prompt: the system message (its framing too) is ``system``; the few-shot example turns and
  the user question are ``user`` (the example's assistant turns were written by us, not sampled,
  so they are never trained on); the assistant generation prompt is ``template``.
* after a model turn: the markup that closes the assistant turn (``template``; when the model
  stopped on the end-of-turn token, that token is the model's own and only what follows it is
  added), the tool message framing (``template``) around its content (``tool``), then the
  next generation prompt (``template``). If the template changes the observation text so that
  it cannot be found verbatim in the render, the whole tool message is marked ``tool``.

Tool protocols: a template that references ``tools`` is *native*: the schemas are passed to
``apply_chat_template`` and calls are ``<tool_call>{json}</tool_call>``; otherwise the *plain*
protocol is used (tool list in the system prompt, one bare JSON object per turn), see
:mod:`inboxrl.agent.prompts`. Parsing is in :mod:`inboxrl.agent.parsing`; only the first call
of a turn is executed.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from inboxrl.agent import prompts
from inboxrl.agent.parsing import (TOOL_CALL_CLOSE, TOOL_CALL_OPEN, first_object_closed,
                                   parse_tool_call)
from inboxrl.agent.trajectory import Trajectory
from inboxrl.email.types import Scenario, ToolCall

__all__ = ["ChatRenderer", "TemplateError", "parse_tool_call", "Segment"]

Segment = tuple[list[int], str]
_END_TOKEN_NAMES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>",
                    "</s>")
_PROBE_CONTENT = "\x1fPROBE\x1f"


class TemplateError(ValueError):
    """The chat template cannot be rendered incrementally (a later render does not extend an
    earlier one), so token-faithful segments cannot be computed."""


def _default_schemas() -> list[dict[str, Any]]:
    from inboxrl.email.tools import TOOL_SCHEMAS

    return list(TOOL_SCHEMAS)


class ChatRenderer:
    """Renders prompts and between-turn markup as ``(ids, source)`` segments.

    ``tool_schemas`` defaults to :data:`inboxrl.email.tools.TOOL_SCHEMAS`; ``system_prompt``
    defaults to the protocol's prompt (:func:`prompts.default_system_prompt`); ``few_shot``
    adds the worked example as real conversation turns.
    """

    def __init__(self, tokenizer: Any, tool_schemas: Sequence[dict[str, Any]] | None = None,
                 system_prompt: str | None = None, few_shot: bool = True) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError("the tokenizer has no chat template")
        self.tokenizer = tokenizer
        self.tool_schemas = list(tool_schemas) if tool_schemas is not None else _default_schemas()
        self.native_tools = "tools" in tokenizer.chat_template
        self.system_prompt = (system_prompt if system_prompt is not None
                              else prompts.default_system_prompt(self.tool_schemas, self.native_tools))
        self.few_shot = few_shot
        self._close_text = self._closing_markup()
        self.stop_token_ids = self._stop_ids()
        self._stop_texts = [self.decode([i]) for i in self.stop_token_ids]

    # -- basic text <-> ids --------------------------------------------------------------------
    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        """The template's text for ``messages`` (tools passed when the template is native)."""
        kwargs: dict[str, Any] = {"tools": self.tool_schemas} if self.native_tools else {}
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt, **kwargs)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token strings in it become their ids; no BOS added)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def decode(self, ids: Sequence[int]) -> str:
        """Exact text of ``ids`` (special tokens kept, no clean-up of spaces)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    def _delta(self, before: list[dict], after: list[dict], gen_before: bool = False,
               gen_after: bool = False) -> str:
        a = self.render(before, gen_before) if before or gen_before else ""
        b = self.render(after, gen_after)
        if not b.startswith(a):
            raise TemplateError("chat template is not incremental: a longer conversation does not "
                                "extend the render of a shorter one")
        return b[len(a):]

    # -- tool-call protocol --------------------------------------------------------------------
    def format_call(self, call: ToolCall) -> str:
        """The exact assistant text for ``call`` (used by the few-shot example and SFT data)."""
        body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}" if self.native_tools else body

    def call_complete(self, turn_text: str) -> bool:
        """True when a turn's text holds a complete tool call, so generation should stop:
        ``</tool_call>`` after ``<tool_call>`` (native) or the first balanced JSON object
        closed (plain)."""
        if self.native_tools:
            open_at = turn_text.find(TOOL_CALL_OPEN)
            return open_at >= 0 and turn_text.find(TOOL_CALL_CLOSE, open_at) >= 0
        return first_object_closed(turn_text)

    def stop_trigger_ids(self) -> list[int]:
        """Ids of tokens whose text contains ``}`` or ``>``: only after sampling one of these can
        :meth:`call_complete` change, so the engine checks it only then."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        return [i for i, t in enumerate(tokens) if t and ("}" in t or ">" in t)]

    # -- messages ------------------------------------------------------------------------------
    def few_shot_messages(self) -> list[dict[str, str]]:
        return prompts.few_shot_messages(self.format_call) if self.few_shot else []

    def prompt_messages(self, scenario: Scenario) -> list[dict[str, str]]:
        """System, few-shot example (if enabled) and the user question, as chat messages."""
        return ([{"role": "system", "content": self.system_prompt}] + self.few_shot_messages()
                + [{"role": "user", "content": prompts.scenario_user_message(scenario)}])

    def prompt_segments(self, scenario: Scenario) -> list[Segment]:
        """The initial prompt: system (``system``), few-shot and question (``user``), then the
        generation prompt (``template``)."""
        msgs = self.prompt_messages(scenario)
        segments: list[Segment] = []
        for k in range(len(msgs)):
            text = self._delta(msgs[:k], msgs[:k + 1])
            segments.append((self.encode(text), "system" if msgs[k]["role"] == "system" else "user"))
        segments.append((self.encode(self._delta(msgs, msgs, gen_after=True)), "template"))
        return [(ids, src) for ids, src in segments if ids]

    def _probe(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                {"role": "assistant", "content": _PROBE_CONTENT}]

    def _closing_markup(self) -> str:
        text = self.render(self._probe())
        at = text.rfind(_PROBE_CONTENT)
        if at < 0:
            raise TemplateError("the chat template does not render assistant content verbatim")
        return text[at + len(_PROBE_CONTENT):]

    def _stop_ids(self) -> list[int]:
        tok = self.tokenizer
        ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        vocab = tok.get_vocab()
        ids |= {vocab[name] for name in _END_TOKEN_NAMES if name in vocab}
        close_ids = self.encode(self._close_text)
        if close_ids and close_ids[0] in set(tok.all_special_ids):
            ids.add(close_ids[0])
        return sorted(int(i) for i in ids)

    def closing_text(self, stopped_on_eos: bool) -> str:
        """Markup the harness appends to close an assistant turn: all of it, or what follows
        the end-of-turn token when the model itself sampled that token."""
        if stopped_on_eos:
            for stop in self._stop_texts:
                if stop and self._close_text.startswith(stop):
                    return self._close_text[len(stop):]
        return self._close_text

    def after_turn_segments(self, stopped_on_eos: bool, observation: str) -> list[Segment]:
        """Closing markup (``template``), the tool message (framing ``template``, content
        ``tool``) and the next generation prompt (``template``), for one observation."""
        base = self._probe()
        with_tool = base + [{"role": "tool", "content": observation}]
        tool_text = self._delta(base, with_tool)
        gen_text = self._delta(with_tool, with_tool, gen_after=True)
        segments: list[Segment] = [(self.encode(self.closing_text(stopped_on_eos)), "template")]
        at = tool_text.find(observation) if observation else -1
        if at < 0:
            segments.append((self.encode(tool_text), "tool"))
        else:
            segments += [(self.encode(tool_text[:at]), "template"), (self.encode(observation), "tool"),
                         (self.encode(tool_text[at + len(observation):]), "template")]
        segments.append((self.encode(gen_text), "template"))
        return [(ids, src) for ids, src in segments if ids]

    # -- sanity check ----------------------------------------------------------------------------
    def check(self, trajectory: Trajectory) -> str | None:
        """Compare a trajectory's incremental ids with a fresh render of its messages.

        The trajectory's decoded text must be a prefix of the full render of
        ``trajectory.messages`` and differ from it at most by the markup that would close the
        last assistant turn. Token ids may legitimately differ from a fresh tokenisation of the
        full text where model text meets template text (BPE merges across the boundary), so a
        token difference is reported only when the decoded strings differ. Returns ``None``
        when consistent, else a message naming the first mismatching token and its context.
        """
        if not trajectory.messages:
            return "trajectory has no messages to render"
        awaiting_model = trajectory.messages[-1].get("role") != "assistant"
        full = self.render(trajectory.messages, add_generation_prompt=awaiting_model)
        ids = trajectory.token_ids
        text = self.decode(ids)
        if full.startswith(text):
            tail = full[len(text):]
            if tail in ("", self._close_text, self.closing_text(True)):
                return None
            return f"trajectory ends early: the render continues with {tail[:80]!r}"
        p = next((i for i, (a, b) in enumerate(zip(text, full)) if a != b), min(len(text), len(full)))
        pos, length = 0, 0
        while pos < len(ids) and length + len(self.decode(ids[pos:pos + 1])) <= p:
            length += len(self.decode(ids[pos:pos + 1]))
            pos += 1
        return (f"mismatch at token {pos} (char {p}, source "
                f"{trajectory.sources[pos] if pos < len(trajectory.sources) else '?'}): trajectory "
                f"{text[max(0, p - 40):p + 40]!r} vs render {full[max(0, p - 40):p + 40]!r}")
