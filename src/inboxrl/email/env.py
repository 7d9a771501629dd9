"""One episode of the email task: runs tool calls against the scenario's inbox, emits turn
events (DESIGN.md §3, §5) and fills the :class:`~inboxrl.email.rubric.Rubric`.

The environment never raises on model input: malformed calls, unknown tools, bad arguments,
store failures and judge failures all become an error observation and rubric fields. With a
concurrent judge (:class:`inboxrl.email.judge_pool.ConcurrentJudge`) and ``defer_verdict``
the final answer is recorded at once and its verdict requested in the background;
:meth:`EmailTaskEnv.settle` records it when the rollouts are done (the rollout function calls
it). Without ``defer_verdict`` the judge is asked at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inboxrl.email.types import Scenario, ToolCall
from inboxrl.email import tools
from inboxrl.email.judge import Judge, Verdict, is_idk
from inboxrl.email.judge_pool import wait_for_verdict
from inboxrl.email.rubric import (FORMAT_ERROR, FOUND_REFERENCE, INVALID_READ, READ_REFERENCE,
                                  REPEATED_SEARCH, ZERO_RESULTS, Rubric)

FINISH_REASONS = ("answered", "idk", "max_turns", "context_overflow", "error")


@dataclass
class StepResult:
    """What one model turn produced. ``error`` is ``"<kind>: <detail>"`` for a format error
    (kind ``unparseable``, ``unknown_tool`` or ``bad_arguments``), else None."""

    observation: str
    done: bool
    events: list[str] = field(default_factory=list)
    error: str | None = None


class EmailTaskEnv:
    """One episode of one scenario. ``store`` needs ``search(inbox, keywords, ...)`` and
    ``read(inbox, message_id)`` (:class:`inboxrl.email.store.EmailStore`)."""

    def __init__(self, store: Any, scenario: Scenario, judge: Judge, max_turns: int, defer_verdict: bool = False):
        self.store, self.scenario, self.judge, self.max_turns = store, scenario, judge, max_turns
        # with a concurrent judge: submit the verdict and let the rollout function settle it
        self.defer_verdict = defer_verdict and callable(getattr(judge, "submit", None))
        self.rubric = Rubric()
        self.done = False
        self.finish_reason: str | None = None
        self._references = {_bare(m) for m in scenario.message_ids}
        self._search_keys: set[tuple[Any, ...]] = set()
        self.pending_verdict: Any = None  # a Future[Verdict] from a concurrent judge

    @property
    def out_of_turns(self) -> bool:
        return self.rubric.num_turns >= self.max_turns

    # -- one turn ----------------------------------------------------------------------------
    def step(self, call: ToolCall | None, parse_error: str | None = None) -> StepResult:
        """Run one model turn: a parsed call, or ``call=None`` with the parser's error
        (``"unparseable: ..."``; ``"unknown_tool: ..."``/``"bad_arguments: ..."`` are honoured too).
        Returns the observation for the model, whether the episode ended, and the turn events."""
        if self.done:
            return StepResult(tools.render_error("the episode is over"), True)
        self.rubric.num_turns += 1
        if call is None:
            return self._format_error(_classify_parse_error(parse_error))
        checked = tools.validate_call(call.name, call.arguments)
        if isinstance(checked, tools.ToolError):
            return self._format_error(checked)
        try:
            if isinstance(checked, tools.SearchArgs):
                return self._search(checked)
            if isinstance(checked, tools.ReadArgs):
                return self._read(checked)
            return self._answer(checked)
        except Exception as e:  # a store/tool failure is the harness's, not the model's
            detail = f"{type(e).__name__} in {call.name}: {e}"
            if self.rubric.rollout_error is None:
                self.rubric.rollout_error = detail
            return StepResult(tools.render_error(f"the tool failed: {type(e).__name__}"), False)

    def _format_error(self, err: tools.ToolError) -> StepResult:
        r = self.rubric
        if err.kind == "unknown_tool":
            r.bad_tool_call_name = True
        elif err.kind == "bad_arguments":
            r.bad_tool_call_args = True
        else:
            r.cant_parse_tool_call = True
        r.num_format_errors += 1
        return StepResult(tools.render_error(err.message), False, [FORMAT_ERROR], str(err))

    def _search(self, args: tools.SearchArgs) -> StepResult:
        r, events = self.rubric, []
        hits = self.store.search(self.scenario.inbox_address, list(args.keywords),
                                 from_addr=args.from_addr, to_addr=args.to_addr,
                                 sent_after=args.sent_after, sent_before=args.sent_before,
                                 max_results=args.max_results)
        r.num_searches += 1
        key = args.key()
        if key in self._search_keys:
            r.num_repeated_searches += 1
            events.append(REPEATED_SEARCH)
        else:
            r.num_unique_searches += 1
            self._search_keys.add(key)
        if not hits:
            r.num_zero_result_searches += 1
            events.append(ZERO_RESULTS)
        if not r.found_reference and any(_bare(h.message_id) in self._references for h in hits):
            r.found_reference = True
            events.append(FOUND_REFERENCE)
        return StepResult(tools.render_search(hits), False, events)

    def _read(self, args: tools.ReadArgs) -> StepResult:
        r = self.rubric
        r.num_reads += 1
        email = self.store.read(self.scenario.inbox_address, args.message_id)
        if email is None:
            r.num_invalid_reads += 1
            return StepResult(tools.render_error(f"no email with message_id {args.message_id!r} "
                                                 "in this inbox"), False, [INVALID_READ])
        events = []
        if not r.read_reference and _bare(email.message_id) in self._references:
            r.read_reference = True
            events.append(READ_REFERENCE)
        return StepResult(tools.render_email(email), False, events)

    def _answer(self, args: tools.AnswerArgs) -> StepResult:
        r = self.rubric
        r.final_answer, r.sources = args.answer, list(args.sources)
        r.sources_correct = bool(self._references & {_bare(s) for s in args.sources})
        if is_idk(args.answer):
            r.returned_idk = True
            self._end("idk")
            return StepResult(tools.render_status("answer recorded"), True)
        r.attempted_answer = True
        if self.defer_verdict:  # a concurrent judge: the verdict is settled after the rollouts
            self.pending_verdict = self.judge.submit(self.scenario.question, self.scenario.answer, args.answer)
        else:
            try:
                self.record_verdict(self.judge.judge(self.scenario.question, self.scenario.answer, args.answer))
            except Exception as e:  # a judge failure is reported, never scored as the model's
                self.record_verdict(Verdict(None, f"{type(e).__name__}: {e}"))
        self._end("answered")
        return StepResult(tools.render_status("answer recorded"), True)

    # -- the verdict -------------------------------------------------------------------------
    def record_verdict(self, verdict: Verdict) -> None:
        """Fill ``answer_correct``, or ``judge_error`` when the judge gave no verdict."""
        self.pending_verdict = None
        if verdict.correct is None:
            self.rubric.judge_error = verdict.error or "the judge returned no verdict"
        else:
            self.rubric.answer_correct = bool(verdict.correct)

    def settle(self, since: float) -> bool:
        """Record the verdict submitted to a concurrent judge, waiting at most what is left of the
        judge's step budget counted from ``since`` (``time.monotonic()`` when the step's rollouts
        were done); False when there was none to wait for."""
        if self.pending_verdict is None:
            return False
        self.record_verdict(wait_for_verdict(self.judge, self.pending_verdict, since))
        return True

    # -- the end -----------------------------------------------------------------------------
    def _end(self, reason: str) -> None:
        self.done, self.finish_reason = True, reason

    def finish(self, reason: str) -> Rubric:
        """Finalise the episode and return its rubric. ``reason``: ``answered`` or ``idk`` (the
        episode already ended on an answer), ``max_turns`` (sets ``ran_out_of_turns``),
        ``context_overflow`` (sets ``context_overflow``) or ``error`` (sets ``rollout_error``
        when nothing more specific was recorded). An episode that already ended on an answer
        keeps its answer: a later reason is ignored. ``answered``/``idk`` without an answer is
        recorded as ``error``. An unknown reason raises ValueError (a harness bug)."""
        if reason not in FINISH_REASONS:
            raise ValueError(f"unknown finish reason {reason!r}; expected one of {FINISH_REASONS}")
        if self.finish_reason in ("answered", "idk"):
            return self.rubric
        r = self.rubric
        if reason in ("answered", "idk"):  # a harness bug, recorded rather than raised
            r.rollout_error = r.rollout_error or f"finish({reason!r}) without a final answer"
            reason = "error"
        if reason == "max_turns":
            r.ran_out_of_turns = True
        elif reason == "context_overflow":
            r.context_overflow = True
        elif r.rollout_error is None:
            r.rollout_error = "error"
        self._end(reason)
        return self.rubric


def _classify_parse_error(parse_error: str | None) -> tools.ToolError:
    """The parser's error as a ToolError; anything not marked unknown_tool/bad_arguments is
    an unparseable call."""
    text = str(parse_error or "unparseable: no tool call found").strip()
    kind, _, detail = text.partition(":")
    kind = kind.strip()
    if kind in ("unknown_tool", "bad_arguments"):
        return tools.ToolError(kind, detail.strip() or text)
    return tools.ToolError("unparseable", detail.strip() if kind == "unparseable" and detail.strip() else text)


def _bare(message_id: str) -> str:
    """A message id without surrounding whitespace and angle brackets (as the store matches it)."""
    return message_id.strip().strip("<>").strip()
