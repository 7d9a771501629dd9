"""Token-faithful trajectories (DESIGN.md §3): what the policy saw and sampled, token by token.

``token_ids`` is the whole conversation exactly as the model consumed it; ``sources[i]`` says
who produced token ``i`` (``system``, ``user``, ``tool``, ``model`` or ``template``; ``injected`` in
SFT demonstrations only: a model turn the demonstration scripted as a mistake to recover from,
shown to the model as context and never trained on, see :mod:`inboxrl.sft.demos`);
``logprobs[i]`` is the sampling log-prob of a ``model`` token (0.0 elsewhere); ``turn_index[i]``
is the turn a ``model`` token belongs to (-1 elsewhere). Only ``model`` tokens are trained on.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from inboxrl.email.rubric import Rubric
from inboxrl.email.types import ToolCall

SOURCES = ("system", "user", "tool", "model", "template", "injected")
MODEL = "model"
INJECTED = "injected"


@dataclass
class Turn:
    """One model turn: its text, the call parsed from it (or why none), and what the tool said."""

    index: int
    text: str = ""
    tool_call: ToolCall | None = None
    parse_error: str | None = None  # "unparseable" | "unknown_tool" | "bad_arguments": detail
    tool_result: str | None = None  # the observation exactly as rendered to the model
    events: list[str] = field(default_factory=list)
    num_tokens: int = 0
    process_reward: float = 0.0
    advantage: float = 0.0  # the advantage used in the loss for every model token of the turn
    injected: bool = False  # SFT demonstrations: a scripted mistake (tokens ``injected``, untrained)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tool_call"] = self.tool_call.to_dict() if self.tool_call else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Turn":
        d = dict(d)
        if d.get("tool_call") is not None:
            d["tool_call"] = ToolCall(**d["tool_call"])
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Trajectory:
    """One rollout of one scenario (a member of group ``group_id``)."""

    scenario_id: str
    group_id: int = 0
    rollout_index: int = 0
    token_ids: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turn_index: list[int] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    rubric: Rubric = field(default_factory=Rubric)
    reward: float = 0.0
    finish_reason: str = ""  # answered | idk | max_turns | context_overflow | error
    kept: bool = True  # False when its group was filtered for low variance (or judge error)
    timings: dict[str, float] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)  # chat view (for API policies)

    # -- building ---------------------------------------------------------------------------
    def append(self, ids: Iterable[int], source: str, logprobs: Iterable[float] | None = None,
               turn: int = -1) -> None:
        """Append tokens from one source; ``logprobs`` only for ``model`` tokens."""
        ids = list(ids)
        if source not in SOURCES:
            raise ValueError(f"unknown token source {source!r}")
        lps = list(logprobs) if logprobs is not None else [0.0] * len(ids)
        if len(lps) != len(ids):
            raise ValueError("one log-prob per token")
        self.token_ids += ids
        self.sources += [source] * len(ids)
        self.logprobs += lps
        self.turn_index += [turn if source == MODEL else -1] * len(ids)

    # -- views ------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_model_tokens(self) -> int:
        return sum(1 for s in self.sources if s == MODEL)

    @property
    def finished_early(self) -> bool:
        """Ended before ``max_turns`` (answer, "I don't know" or error)."""
        return self.finish_reason not in ("max_turns", "")

    def model_mask(self) -> list[int]:
        return [1 if s == MODEL else 0 for s in self.sources]

    def token_advantages(self) -> list[float]:
        """Per-token advantages: the turn's advantage on its model tokens, 0 elsewhere."""
        adv = [t.advantage for t in self.turns]
        return [adv[t] if (t >= 0 and self.kept) else 0.0 for t in self.turn_index]

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["turns"] = [t.to_dict() for t in self.turns]
        d["rubric"] = self.rubric.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Trajectory":
        d = dict(d)
        d["turns"] = [Turn.from_dict(t) for t in d.get("turns", [])]
        d["rubric"] = Rubric.from_dict(d.get("rubric", {}))
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def save_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> None:
    """Write trajectories as JSON lines, atomically (temp file, then rename)."""
    from inboxrl.utils.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(t.to_dict()) + "\n" for t in trajectories))


def load_jsonl(path: str | Path) -> list[Trajectory]:
    with open(path, encoding="utf-8") as f:
        return [Trajectory.from_dict(json.loads(line)) for line in f if line.strip()]
