"""Pure formatters of the training-step console log (DESIGN.md §6): strings and rich renderables.

Nothing here prints; :class:`inboxrl.logs.console.ConsoleLog` prints what these return. All text
goes through ``rich.text.Text`` (never markup), so model text such as ``[found ref]`` or
``[/bold]`` is shown verbatim.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.email.rubric import (FORMAT_ERROR, FOUND_REFERENCE, INVALID_READ, READ_REFERENCE,
                                  REPEATED_SEARCH)
from inboxrl.logs.metrics import GroupView, TrainingMetrics

PHASE_HEADERS = {
    1: "STEP PHASE 1: ROLLOUT COLLECTION",
    2: "STEP PHASE 2: REWARDS & ADVANTAGES",
    3: "STEP PHASE 3: MICRO-BATCHING",
    4: "STEP PHASE 4: BACKPROPAGATION & OPTIMIZATION",
}
_EVENT_TAGS = {FOUND_REFERENCE: "found ref", READ_REFERENCE: "read ref", REPEATED_SEARCH: "repeat",
               INVALID_READ: "invalid read", FORMAT_ERROR: "format error"}
MAX_ARG_CHARS = 60


def short(text: Any, limit: int = MAX_ARG_CHARS) -> str:
    """One line, at most ``limit`` characters (an ellipsis marks a cut)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def format_duration(seconds: float | None) -> str:
    """``42.0s``, ``3m 05s``, ``2h 07m``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def _num_hits(turn: Turn) -> int | None:
    if turn.tool_result is None:
        return None
    try:
        doc = json.loads(turn.tool_result)
    except (json.JSONDecodeError, TypeError):
        return 0 if "zero_results" in turn.events else None
    if isinstance(doc, list):
        return len(doc)
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        return len(doc["results"])
    return None


def _is_error(turn: Turn) -> bool:
    return bool(turn.tool_result) and turn.tool_result.lstrip().startswith('{"error"')


def format_call(turn: Turn) -> str:
    """Compact one-line view of a turn's tool call, e.g.
    ``search_emails(["k1","k2"]) -> 3 hits [found ref]`` or ``read_email(id) [read ref]``."""
    tags = "".join(f" [{_EVENT_TAGS[e]}]" for e in turn.events if e in _EVENT_TAGS)
    call = turn.tool_call
    if call is None:
        return f"parse error: {short(turn.parse_error or 'no tool call')}{tags}"
    args = call.arguments if isinstance(call.arguments, dict) else {}
    if call.name == "search_emails":
        kws = args.get("keywords")
        if isinstance(kws, list):
            kw = "[" + ",".join(json.dumps(str(k), ensure_ascii=False) for k in kws) + "]"
        else:
            kw = json.dumps(str(kws), ensure_ascii=False)
        rest = [f"{k}={short(v, 30)}" for k, v in args.items() if k != "keywords" and v is not None]
        head = f"search_emails({', '.join([short(kw)] + rest)})"
        hits = _num_hits(turn)
        if _is_error(turn):
            head += " -> error"
        elif hits is not None:
            head += f" -> {hits} hit{'s' if hits != 1 else ''}"
        return head + tags
    if call.name == "read_email":
        err = " -> error" if _is_error(turn) else ""
        return f"read_email({short(args.get('message_id', ''), 40)}){err}{tags}"
    if call.name == "return_final_answer":
        answer = json.dumps(short(args.get("answer", ""), 50), ensure_ascii=False)
        return f"return_final_answer({answer}){tags}"
    return f"{short(call.name, 30)}({short(json.dumps(args, default=str, ensure_ascii=False), 50)}){tags}"


def verdict(t: Trajectory) -> str:
    """``judge error`` | ``correct`` | ``idk`` | ``wrong`` | ``no answer``."""
    r = t.rubric
    if r.judge_error is not None:
        return "judge error"
    if r.answer_correct:
        return "correct"
    if r.returned_idk:
        return "idk"
    if r.attempted_answer:
        return "wrong"
    return "no answer"


def group_detail(g: GroupView) -> Text:
    """A group's question, reference answer, each rollout's calls, answer, verdict and reward,
    and the group's reward mean/std and kept/filtered status."""
    out = Text()
    head = f"Group {g.group_id} [{g.scenario_id}]"
    out.append(head + "\n", style="bold")
    if g.scenario is not None:
        out.append(f"  Q: {short(g.scenario.question, 110)}\n")
        out.append(f"  Reference: {short(g.scenario.answer, 100)}\n")
    for t in g.trajectories:
        n = len(t.turns)
        out.append(f"  rollout {t.rollout_index}: {n} turn{'s' if n != 1 else ''}, "
                   f"finish={t.finish_reason or '?'}\n")
        for turn in t.turns:
            out.append(f"    {format_call(turn)}\n")
        ans = t.rubric.final_answer
        out.append(f"    answer: {short(ans, 90) if ans is not None else '-'} | {verdict(t)} | "
                   f"reward {t.reward:+.3f}\n")
    status = "kept" if g.kept else "filtered (low variance)"
    out.append(f"  group reward mean {g.reward_mean:+.3f} std {g.reward_std:.3f} -> {status}\n")
    return out


def advantage_table(g: GroupView) -> Table:
    """Turn-by-Turn Advantage table of one group: rows = rollouts, columns = turns, values =
    ``turn.advantage`` (the loss's advantages) as ``+0.512``; ``-`` where a rollout had no such turn."""
    width = max((len(t.turns) for t in g.trajectories), default=0)
    table = Table(title=f"Turn-by-Turn Advantage (group {g.group_id})", title_justify="left")
    table.add_column("rollout", justify="left")
    for i in range(width):
        table.add_column(f"t{i + 1}", justify="right")
    table.add_column("reward", justify="right")
    for t in g.trajectories:
        cells = [f"{turn.advantage:+.3f}" for turn in t.turns] + ["-"] * (width - len(t.turns))
        table.add_row(Text(f"r{t.rollout_index}"), *[Text(c) for c in cells], Text(f"{t.reward:+.3f}"))
    return table


def groups_line(groups: Sequence[GroupView]) -> str:
    """``Groups: k/n kept (f filtered), e/m finished early``."""
    n = len(groups)
    k = sum(1 for g in groups if g.kept)
    trajs = [t for g in groups for t in g.trajectories]
    e = sum(1 for t in trajs if t.finished_early)
    return f"Groups: {k}/{n} kept ({n - k} filtered), {e}/{len(trajs)} finished early"


def micro_batch_text(num_micro_batches: int, token_budget: int | None,
                     batch_tokens: Sequence[int] | None = None) -> Text:
    line = f"{num_micro_batches} micro-batch{'es' if num_micro_batches != 1 else ''}"
    if token_budget:
        line += f" under a budget of {token_budget:,} tokens"
    if batch_tokens:
        line += " (tokens: " + ", ".join(f"{n:,}" for n in batch_tokens) + ")"
    return Text(line)


def optimization_text(m: TrainingMetrics, skip_reason: str | None = None) -> Text:
    """Phase 4: grad norm, tokens trained, total loss, learning rate; a notice when skipped."""
    if m.skipped:
        reason = skip_reason or m.skip_reason or "no trainable tokens"
        return Text(f"Skipped the update: {reason} "
                    f"({m.skipped_steps} skipped so far)")
    return Text(f"grad norm {m.grad_norm:.4f} | tokens trained {m.trainable_tokens:,} | "
                f"total loss {m.loss:.4f} (policy {m.policy_loss:.4f}, kl {m.kl:.4f}) | "
                f"lr {m.learning_rate:.3g} | clip frac {m.clip_fraction:.3f}")


def update_text(update: Any) -> Text:
    """Phase 4 from an ``UpdateStats``-like object (loss, policy_loss, kl, grad_norm,
    clip_fraction, trainable_tokens, num_micro_batches, skipped, skip_reason)."""
    g = lambda name, default=0.0: getattr(update, name, default)  # noqa: E731
    if g("skipped", False):
        return Text(f"Skipped the update: {g('skip_reason', None) or 'no trainable tokens'}")
    mb = int(g("num_micro_batches", 0))
    return Text(f"grad norm {g('grad_norm'):.4f} | tokens trained {int(g('trainable_tokens', 0)):,} | "
                f"total loss {g('loss'):.4f} (policy {g('policy_loss'):.4f}, kl {g('kl'):.4f}) | "
                f"clip frac {g('clip_fraction'):.3f} | {mb} micro-batch{'es' if mb != 1 else ''}")


def group_summary_table(groups: Sequence[GroupView], m: TrainingMetrics) -> Table:
    """Group Summary: groups, kept, filtered (low variance), rollouts finished early, times, tokens."""
    trajs = [t for g in groups for t in g.trajectories]
    kept = sum(1 for g in groups if g.kept)
    early = sum(1 for t in trajs if t.finished_early)
    pct = 100.0 * m.trainable_tokens / m.total_tokens if m.total_tokens else 0.0
    table = Table(title=f"Group Summary (step {m.step})", title_justify="left", show_header=False)
    table.add_column("item")
    table.add_column("value", justify="right")
    rows = [("Total groups", f"{len(groups)}"), ("Kept", f"{kept}"),
            ("Filtered (low variance)", f"{len(groups) - kept}"),
            ("Early exits", f"{early}/{len(trajs)} finished early"),
            ("Rollout time", format_duration(m.rollout_time)),
            ("Training time", format_duration(m.training_time)),
            ("Total tokens", f"{m.total_tokens:,}"),
            ("Trainable tokens", f"{m.trainable_tokens:,} ({pct:.1f}%)")]
    for k, v in rows:
        table.add_row(Text(k), Text(v))
    return table


def step_summary_text(m: TrainingMetrics, eta_seconds: float | None) -> Text:
    """The step summary: time, ETA, reward mean/std/median/range and moving average, loss,
    accuracy, tokens, and the judge errors when there were any."""
    total = f"/{m.total_steps}" if m.total_steps else ""
    acc = f"{100 * m.accuracy:.1f}%" if m.accuracy is not None else "n/a"
    pct = 100.0 * m.trainable_tokens / m.total_tokens if m.total_tokens else 0.0
    loss = "skipped" if m.skipped else f"{m.loss:.4f}"
    lines = [
        f"Step {m.step}{total} done in {format_duration(m.step_time)} (rollout "
        f"{format_duration(m.rollout_time)}, train {format_duration(m.training_time)}) | "
        f"ETA {format_duration(eta_seconds)}",
        f"  reward mean {m.avg_reward:+.3f} std {m.std_reward:.3f} median {m.median_reward:+.3f} "
        f"range [{m.min_reward:+.3f}, {m.max_reward:+.3f}] | moving avg {m.reward_moving_avg:+.3f}",
        f"  loss {loss} | accuracy {acc} | tokens {m.total_tokens:,} (trainable "
        f"{m.trainable_tokens:,}, {pct:.1f}%) | {m.tokens_per_second:,.0f} tok/s",
    ]
    if m.judge_errors:
        reason = m.extra.get("judge_error_reason")
        why = f" ({short(reason, 120)})" if reason else ""
        lines.append(f"  judge errors {m.judge_errors}/{m.num_rollouts} rollouts{why}: left out of "
                     "the rewards above, the advantages and the loss")
    return Text("\n".join(lines))


def phase_block(phase: int, body: Sequence[Any]) -> Group:
    return Group(Text(PHASE_HEADERS[phase], style="bold cyan"), *body)
