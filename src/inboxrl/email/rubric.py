"""The rubric of one rollout, its outcome reward and per-turn process rewards (the
reward table of the README).

Outcome reward (ART-E tiers; ``found``, ``read``, ``sources`` are 0/1):

============================================  ===============================================
case                                          reward
============================================  ===============================================
unparseable call / unknown tool / bad args    -2.0 / -1.9 / -1.8, each + 0.1 found + 0.1 read
answered, wrong                               -1.0 + 0.1 found + 0.1 read + 0.1 sources
"I don't know" or ran out of turns            0.0 + 0.1 found + 0.1 read
answered, correct                             1.0 + 0.3 sources + 0.1 (1 - turns / max_turns)
============================================  ===============================================

A malformed call gives the model an error result and the episode goes on, so a rollout can
recover. The format tiers apply to a rollout that made a malformed call and never returned
an answer (it ran out of turns or context); a rollout that answered is scored on its answer,
and its malformed turns are still penalised by the process reward (-1 each).

A rollout whose judge failed (``judge_error``) has no verdict: it gets the neutral reward, is
left out of its group's advantages and of the loss, and is reported apart in evals.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Turn events and their process rewards.
FOUND_REFERENCE = "found_reference"
READ_REFERENCE = "read_reference"
REPEATED_SEARCH = "repeated_search"
ZERO_RESULTS = "zero_results"
INVALID_READ = "invalid_read"
FORMAT_ERROR = "format_error"

PROCESS_REWARDS: dict[str, float] = {
    FOUND_REFERENCE: 1.0,
    READ_REFERENCE: 1.0,
    REPEATED_SEARCH: -0.5,
    INVALID_READ: -0.5,
    FORMAT_ERROR: -1.0,
}


@dataclass
class Rubric:
    """Everything the reward and the eval statistics need about one rollout."""

    answer_correct: bool = False
    attempted_answer: bool = False  # returned a final answer that is not "I don't know"
    returned_idk: bool = False
    final_answer: str | None = None
    sources: list[str] = field(default_factory=list)
    sources_correct: bool = False  # the sources include a reference message id
    found_reference: bool = False  # a search result list contained a reference message
    read_reference: bool = False  # read_email was called on a reference message
    ran_out_of_turns: bool = False
    context_overflow: bool = False
    cant_parse_tool_call: bool = False
    bad_tool_call_name: bool = False
    bad_tool_call_args: bool = False
    num_turns: int = 0
    num_searches: int = 0
    num_unique_searches: int = 0
    num_repeated_searches: int = 0
    num_zero_result_searches: int = 0
    num_reads: int = 0
    num_invalid_reads: int = 0
    num_format_errors: int = 0
    judge_error: str | None = None
    rollout_error: str | None = None  # an unexpected failure isolated to this rollout

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Rubric":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @property
    def answered(self) -> bool:
        return self.final_answer is not None


def outcome_reward(r: Rubric, max_turns: int) -> float:
    """ART-E tiered outcome reward of one rollout (see the module docstring)."""
    found, read, sources = float(r.found_reference), float(r.read_reference), float(r.sources_correct)
    if r.judge_error is not None:  # unknown verdict: neutral, and the trainer drops the rollout
        return 0.1 * found + 0.1 * read
    if not r.answered and (r.cant_parse_tool_call or r.bad_tool_call_name or r.bad_tool_call_args):
        base = -2.0 if r.cant_parse_tool_call else (-1.9 if r.bad_tool_call_name else -1.8)
        return base + 0.1 * found + 0.1 * read
    if r.answer_correct:
        return 1.0 + 0.3 * sources + 0.1 * (1.0 - min(r.num_turns, max_turns) / max_turns)
    if r.attempted_answer:
        return -1.0 + 0.1 * found + 0.1 * read + 0.1 * sources
    return 0.0 + 0.1 * found + 0.1 * read  # "I don't know", out of turns or out of context


def process_reward(events: list[str]) -> float:
    """Process reward of one turn: the sum of its events' rewards."""
    return float(sum(PROCESS_REWARDS.get(e, 0.0) for e in events))
