"""Protocol-following of trajectories: the share of turns with a valid tool call and of rollouts
whose first call is a search (the warm start's targets, and part of every eval)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from inboxrl.agent.trajectory import Trajectory

SEARCH_TOOL = "search_emails"


@dataclass
class ProtocolStats:
    """How well trajectories follow the tool protocol."""

    num_rollouts: int
    num_turns: int
    valid_call_rate: float  # turns whose text parsed to a known tool with valid arguments
    first_search_rate: float  # rollouts whose first call is a valid search_emails call

    def to_dict(self) -> dict[str, float | int]:
        return {"num_rollouts": self.num_rollouts, "num_turns": self.num_turns,
                "valid_call_rate": self.valid_call_rate, "first_search_rate": self.first_search_rate}

    def line(self) -> str:
        return (f"Protocol: valid tool calls in {self.valid_call_rate:.1%} of {self.num_turns} turns; "
                f"search first in {self.first_search_rate:.1%} of {self.num_rollouts} rollouts")


def valid_call(turn: Any) -> bool:
    """A turn whose text parsed to a known tool with valid arguments."""
    return turn.tool_call is not None and turn.parse_error is None


def protocol_stats(trajectories: Sequence[Trajectory]) -> ProtocolStats:
    """Valid-call share over all turns and search-first share over all rollouts (a rollout with
    no turn counts as not searching first). Empty input gives zeros."""
    turns = [t for traj in trajectories for t in traj.turns]
    valid = sum(1 for t in turns if valid_call(t))
    first = sum(1 for traj in trajectories if traj.turns and valid_call(traj.turns[0])
                and traj.turns[0].tool_call.name == SEARCH_TOOL)
    n = len(trajectories)
    return ProtocolStats(num_rollouts=n, num_turns=len(turns),
                         valid_call_rate=valid / len(turns) if turns else 0.0,
                         first_search_rate=first / n if n else 0.0)
