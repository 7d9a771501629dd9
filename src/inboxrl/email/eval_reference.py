"""Evaluate the scripted reference agent on a store and a scenario set (before any training:
a task the scripted agent cannot solve is broken; the snippet baseline shows the distractors
work). Backs the ``inboxrl eval-reference`` command.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from inboxrl.email.judge import Judge
from inboxrl.email.reference_agent import ReferenceAgent, ReferenceEpisode, run_reference_episode
from inboxrl.email.store import EmailStore
from inboxrl.email.types import Scenario


def evaluate_reference_agent(db_path: str | Path, scenarios: Sequence[Scenario], judge: Judge,
                             max_turns: int = 10, mode: str = "read", seed: int = 0,
                             **agent_options: Any) -> list[ReferenceEpisode]:
    """One episode per scenario, in order. Each scenario's agent gets its own
    ``random.Random(f"{seed}:{scenario.id}")``, so an episode does not depend on which other
    scenarios are evaluated. ``agent_options`` go to :class:`ReferenceAgent` (variety knobs).
    Raises ``StoreError`` when ``db_path`` is not a store."""
    episodes = []
    with EmailStore(db_path) as store:
        for sc in scenarios:
            agent = ReferenceAgent(random.Random(f"{seed}:{sc.id}"), mode=mode, **agent_options)
            episodes.append(run_reference_episode(store, sc, judge, max_turns, agent))
    return episodes


@dataclass
class ReferenceSummary:
    """Rates are shares of all episodes; ``avg_*`` are means per episode."""

    mode: str
    episodes: int
    accuracy: float
    attempted: float
    idk: float
    found: float
    read: float
    sources: float
    judge_errors: int
    rollout_errors: int  # episodes where the store or a tool failed (not the agent's fault)
    avg_searches: float
    avg_reads: float
    avg_turns: float
    avg_reward: float


def summarize(episodes: Sequence[ReferenceEpisode], mode: str = "") -> ReferenceSummary:
    """Rubric summary of a list of episodes (all zeros for an empty list)."""
    n = len(episodes)

    def share(attr: str) -> float:
        return sum(bool(getattr(e.rubric, attr)) for e in episodes) / n if n else 0.0

    def mean(values: list[float]) -> float:
        return statistics.fmean(values) if values else 0.0

    return ReferenceSummary(
        mode=mode, episodes=n, accuracy=share("answer_correct"), attempted=share("attempted_answer"),
        idk=share("returned_idk"), found=share("found_reference"), read=share("read_reference"),
        sources=share("sources_correct"),
        judge_errors=sum(e.rubric.judge_error is not None for e in episodes),
        rollout_errors=sum(e.rubric.rollout_error is not None for e in episodes),
        avg_searches=mean([e.rubric.num_searches for e in episodes]),
        avg_reads=mean([e.rubric.num_reads for e in episodes]),
        avg_turns=mean([e.rubric.num_turns for e in episodes]),
        avg_reward=mean([e.reward for e in episodes]))


def format_summary(s: ReferenceSummary) -> str:
    """One compact line: accuracy, answered/idk, found/read/sources, searches, reads, turns."""
    return (f"reference agent [{s.mode or '?'}] on {s.episodes} scenarios: accuracy {s.accuracy:.3f} | "
            f"answered {s.attempted:.2f}, idk {s.idk:.2f} | found {s.found:.2f}, read {s.read:.2f}, "
            f"sources {s.sources:.2f} | searches {s.avg_searches:.2f}, reads {s.avg_reads:.2f}, "
            f"turns {s.avg_turns:.2f} | reward {s.avg_reward:.3f}"
            + (f" | judge errors {s.judge_errors}" if s.judge_errors else "")
            + (f" | TOOL ERRORS {s.rollout_errors}" if s.rollout_errors else ""))


def print_summary(episodes: Sequence[ReferenceEpisode], mode: str = "",
                  file: TextIO | None = None) -> ReferenceSummary:
    """Print :func:`format_summary` of the episodes and return the summary."""
    summary = summarize(episodes, mode)
    print(format_summary(summary), file=file)
    return summary
