"""Demonstrations for the SFT warm start (issue 5): reference-agent episodes rendered exactly as
rollouts of the policy would be.

:func:`render_calls` replays a list of tool calls through a fresh environment with the rollout
engine's own bookkeeping (:class:`inboxrl.agent.episode.Episode`) and token layout (the same
functions of :mod:`inboxrl.agent.token_layout` the engine calls): the prompt, then per turn the
model text ``renderer.format_call(call)`` tokenised on its own as ``model`` tokens (log-prob 0),
then — when the rollout goes on — the end of the turn and the tool result (``stopped_on_eos=False``). The
engine ends a turn as soon as the tool call is complete (before any end-of-turn token), so a
policy that emits exactly these tokens produces a token-identical trajectory (turns, events,
process rewards, rubric, reward, finish reason, messages). The same per-turn token and context
budgets apply: a demonstration the engine would have cut is rejected. A call flagged
``injected`` (a scripted slip of the reference agent, ``p_slip``) is laid out the same way but its
tokens are ``injected`` rather than ``model`` and its turn is marked ``injected``: the model sees
the slip and the empty result in its context and is trained only on the recovery (noise
injection into demonstrations so that the learner sees, and learns to leave, the states its own
mistakes lead to: DART, Laskey et al. 2017, arXiv:1703.09327).

:func:`collect_demonstrations` runs the scripted reference agent (seeded, several varied episodes
per scenario) on training scenarios and keeps the correctly answered ones.

:func:`protocol_stats` (from :mod:`inboxrl.logs.protocol`) measures protocol-following.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.episode import Episode
from inboxrl.agent.token_layout import append_result, open_prompt, turn_budget
from inboxrl.agent.trajectory import INJECTED, MODEL, Trajectory
from inboxrl.email.types import Scenario, ToolCall
from inboxrl.email.rubric import ZERO_RESULTS
from inboxrl.logs.protocol import ProtocolStats, protocol_stats, valid_call  # noqa: F401 (re-exported)


class DemoError(ValueError):
    """A demonstration cannot be rendered as a rollout (too long for the budgets, or it does
    not end on its last call)."""


@dataclass
class DemoSettings:
    """How demonstrations are collected.

    ``num_demos``: successful demonstrations wanted (0 = as many as the attempts give);
    ``episodes_per_scenario``: reference episodes tried per training scenario (each with its own
    seeded agent, so keyword choices, second searches and distractor reads vary);
    ``max_turns`` / ``max_new_tokens`` / ``max_context_tokens``: the rollout budgets the
    demonstrations must fit; ``agent_options``: keyword arguments of ``ReferenceAgent`` (the
    defaults make the agent vary more than its eval defaults: a distractor read first 40% of the
    time it can, and the often-too-narrow whole-question first search already at 4 turns, so a
    second search is needed; at most 4 keywords per search: with the whole question's 7-12
    keywords in a third of the searches, SmolLM2-135M learned to repeat keywords without end and
    made valid calls in only 69% of turns); ``max_pattern_share``: at most this share of
    ``num_demos`` may have the same call pattern (``search>read>answer``...) while other
    episodes are left; the set is topped up with the held-back episodes when the attempts run
    out (1.0 = no cap). ``agent_options["p_slip"]`` (``SFT_SLIP_PROB``, set by the warm start):
    the share of episodes that start with a scripted slip (see the module docstring). The
    default set on the embedded inbox (slip 0.3): 16 search>read>answer, 8
    slip>search>read>answer, 5 search>read>read>answer, 3 search>search>read>answer.
    """

    num_demos: int = 32
    episodes_per_scenario: int = 4
    seed: int = 0
    max_turns: int = 4
    max_new_tokens: int = 96
    max_context_tokens: int = 3072
    agent_mode: str = "read"
    agent_options: dict[str, Any] = field(
        default_factory=lambda: {"p_distractor_first": 0.4, "roomy_turns": 4, "max_keywords": 4})
    max_pattern_share: float = 0.5

    def __post_init__(self) -> None:
        if self.num_demos < 0 or self.episodes_per_scenario < 1:
            raise ValueError("need num_demos >= 0 and episodes_per_scenario >= 1")
        if not 0.0 < self.max_pattern_share <= 1.0:
            raise ValueError("max_pattern_share must be in (0, 1]")

    def pattern_cap(self) -> int | None:
        """Most demonstrations one call pattern may take (None: no cap)."""
        if not self.num_demos or self.max_pattern_share >= 1.0:
            return None
        return max(1, math.ceil(self.max_pattern_share * self.num_demos))


@dataclass
class DemoSet:
    """The kept demonstrations and what happened to the rest."""

    trajectories: list[Trajectory]
    attempted: int = 0
    unsuccessful: int = 0  # wrong answer, "I don't know", out of turns, error
    rejected: int = 0  # would not fit the rollout budgets
    held_back: int = 0  # successful, but their pattern had its share (see DemoSettings); unused
    slips_found: int = 0  # a scripted slip that found emails: no mistake to recover from; dropped
    call_patterns: Counter = field(default_factory=Counter)  # e.g. "search>read>answer": count

    def summary(self) -> str:
        patterns = ", ".join(f"{p} x{n}" for p, n in self.call_patterns.most_common(5))
        return (f"{len(self.trajectories)} demonstrations kept of {self.attempted} reference episodes "
                f"({self.unsuccessful} unsuccessful, {self.rejected} over budget, {self.slips_found} slips "
                f"that found emails, {self.held_back} held back for variety); patterns: {patterns}")


def render_calls(renderer: ChatRenderer, scenario: Scenario, calls: Sequence[ToolCall],
                 env_factory: Callable[[Scenario], Any], max_turns: int, max_new_tokens: int,
                 max_context_tokens: int, group_id: int = 0, rollout_index: int = 0,
                 injected: Sequence[bool] | None = None) -> Trajectory:
    """The trajectory a rollout of ``scenario`` makes when its model emits exactly
    ``renderer.format_call(c)`` for each ``c`` in ``calls`` (see the module docstring).

    Raises :class:`DemoError` when a turn exceeds its budget (:func:`turn_budget`), the context
    would overflow, or the episode ends before / does not end after the last call. The returned
    trajectory has ``logprobs`` 0.0 everywhere and the rubric/reward of the replay. ``injected[k]``
    true: call ``k``'s tokens are ``injected`` (context, not trained) and its turn is flagged.
    """
    ep = Episode(scenario, group_id, rollout_index, env_factory, max_turns)
    if ep.done or open_prompt(ep, renderer, scenario, max_context_tokens) is None:
        raise DemoError(f"scenario {scenario.id}: the prompt does not fit the context or the "
                        f"environment could not start ({ep.traj.finish_reason})")
    traj = ep.traj
    for k, call in enumerate(calls):
        if ep.done:
            raise DemoError(f"scenario {scenario.id}: the episode ended before call {k}")
        ids = renderer.encode(renderer.format_call(call))
        text = renderer.decode(ids)  # what the engine records for these sampled ids
        budget = turn_budget(ep, max_new_tokens, max_context_tokens)
        if len(ids) > budget:
            raise DemoError(f"scenario {scenario.id}: call {k} has {len(ids)} tokens, budget {budget}")
        slip = bool(injected and injected[k])
        traj.append(ids, INJECTED if slip else MODEL, [0.0] * len(ids), turn=len(traj.turns))
        traj.messages.append({"role": "assistant", "content": text})
        observation = ep.take_turn(text, num_tokens=len(ids))
        traj.turns[-1].injected = slip
        if observation is None:
            break
        if append_result(ep, renderer, False, observation, max_context_tokens) is None:
            raise DemoError(f"scenario {scenario.id}: the result of call {k} overflows the context")
    if not ep.done or len(traj.turns) != len(calls) or traj.finish_reason == "context_overflow":
        raise DemoError(f"scenario {scenario.id}: the episode does not end on its last call")
    traj.timings = {}
    return traj


def call_pattern(traj: Trajectory) -> str:
    """``search>read>answer``-style summary of a trajectory's tool calls (``invalid`` for a turn
    with a format error, ``slip`` for an injected one)."""
    short = {"search_emails": "search", "read_email": "read", "return_final_answer": "answer"}
    return ">".join("slip" if t.injected else short.get(t.tool_call.name, t.tool_call.name)
                    if valid_call(t) else "invalid" for t in traj.turns)


def successful(traj: Trajectory) -> bool:
    """Answered correctly, with no format error, judge error or tool failure."""
    r = traj.rubric
    return (traj.finish_reason == "answered" and bool(r.answer_correct) and not r.judge_error
            and not r.rollout_error
            and r.num_format_errors == 0)


def collect_demonstrations(store: Any, scenarios: Sequence[Scenario], judge: Any,
                           renderer: ChatRenderer, env_factory: Callable[[Scenario], Any],
                           settings: DemoSettings) -> DemoSet:
    """Run the reference agent on ``scenarios`` and keep successful, renderable episodes.

    Scenarios are visited in a seeded order, ``episodes_per_scenario`` times each (round by
    round, so the kept set covers as many scenarios as possible), until ``num_demos`` are kept.
    An episode whose call pattern already fills its share (:meth:`DemoSettings.pattern_cap`) is
    held back, and used, in order, only if the attempts run out first. Each episode's agent has
    its own seed (``settings.seed``, round, scenario position), so the result is deterministic.
    Every kept demonstration went through :func:`render_calls` and :func:`successful`.
    ``group_id`` = scenario position, ``rollout_index`` = round.
    """
    order = list(range(len(scenarios)))
    random.Random(settings.seed).shuffle(order)
    out, held = DemoSet(trajectories=[]), []
    cap, want = settings.pattern_cap(), settings.num_demos
    for rnd in range(settings.episodes_per_scenario):
        for pos in order:
            if want and len(out.trajectories) >= want:
                break
            traj = _attempt(store, scenarios[pos], judge, renderer, env_factory, settings, pos, rnd, out)
            if traj is None:
                continue
            pattern = call_pattern(traj)
            if cap is not None and out.call_patterns[pattern] >= cap:
                held.append(traj)
                continue
            out.trajectories.append(traj)
            out.call_patterns[pattern] += 1
    top_up = held[:max(0, want - len(out.trajectories))] if want else held
    for traj in top_up:
        out.trajectories.append(traj)
        out.call_patterns[call_pattern(traj)] += 1
    out.held_back = len(held) - len(top_up)
    return out


def _attempt(store: Any, scenario: Scenario, judge: Any, renderer: ChatRenderer,
             env_factory: Callable[[Scenario], Any], settings: DemoSettings, pos: int, rnd: int,
             out: DemoSet) -> Trajectory | None:
    """One seeded reference episode rendered as a rollout; None (counted in ``out``) when it
    does not fit the budgets or is not :func:`successful`."""
    from inboxrl.email.reference_agent import ReferenceAgent, run_reference_episode

    agent = ReferenceAgent(random.Random(f"{settings.seed}/{rnd}/{pos}"), mode=settings.agent_mode,
                           **settings.agent_options)
    out.attempted += 1
    episode = run_reference_episode(store, scenario, judge, settings.max_turns, agent)
    try:
        traj = render_calls(renderer, scenario, episode.calls, env_factory, settings.max_turns,
                            settings.max_new_tokens, settings.max_context_tokens,
                            group_id=pos, rollout_index=rnd, injected=episode.injected)
    except DemoError:
        out.rejected += 1
        return None
    if not successful(traj):
        out.unsuccessful += 1
        return None
    if any(t.injected and ZERO_RESULTS not in t.events for t in traj.turns):
        out.slips_found += 1
        return None
    return traj
