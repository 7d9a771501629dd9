"""Per-rollout turn bookkeeping shared by the rollout engines (transformers on CPU/GPU:
:mod:`inboxrl.agent.hf_engine`; vLLM on GPU: :mod:`inboxrl.agent.vllm_engine`).

An engine samples the tokens; this module opens each rollout's prompt, records every sampled
token with its log-prob (token-faithful: the ids the model saw and sampled, never re-tokenised),
decides where a turn ends, runs the tool between turns and appends its result:

* a turn ends on an end-of-turn / eos token, when its tool call is complete
  (``ChatRenderer.call_complete``, only checked after a token containing ``}`` or ``>``), or at
  its token budget ``min(max_new_tokens, max_context_tokens - tokens so far)``;
* the call is executed between turns (:class:`~inboxrl.agent.episode.Episode`); before a tool
  result is appended the context budget is checked (room for the result, the generation prompt
  and one token), and a rollout that does not fit ends with ``context_overflow``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from inboxrl.agent.chat import ChatRenderer, TemplateError
from inboxrl.agent.episode import Episode
from inboxrl.agent.sampling import row_generator
from inboxrl.agent.token_layout import append_result, open_prompt, turn_budget
from inboxrl.agent.trajectory import Trajectory


@dataclass
class Row:
    """One live rollout: its episode, generator, the ids not yet given to the model, and the
    turn being sampled."""

    episode: Episode
    generator: torch.Generator
    pending: list[int] = field(default_factory=list)  # ids appended but not yet fed to the model
    turn_ids: list[int] = field(default_factory=list)
    turn_logprobs: list[float] = field(default_factory=list)
    budget: int = 0
    generating: bool = False


class TurnBook:
    """The turn logic of an engine (see the module docstring); ``on_finish`` gets each finished
    trajectory."""

    def __init__(self, tokenizer: Any, renderer: ChatRenderer | None, settings: Any,
                 on_finish: Callable[[Trajectory], None]) -> None:
        self.tokenizer = tokenizer
        self.renderer: ChatRenderer = renderer or ChatRenderer(tokenizer)
        self.settings = settings
        self.on_finish = on_finish
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.renderer.stop_token_ids[0])
        self.stop_ids = set(self.renderer.stop_token_ids)
        self.trigger_ids = set(self.renderer.stop_trigger_ids())
        self.generated_tokens = 0

    def start(self, req: Any, env_factory: Callable[[Any], Any]) -> Row:
        """Open ``req``'s episode and prompt (pending); a row already ``done`` when it could not start."""
        s = self.settings
        ep = Episode(req.scenario, req.group_id, req.rollout_index, env_factory, s.max_turns)
        row = Row(ep, row_generator(s.seed, req.group_id, req.rollout_index))
        if ep.done:
            self.finished(row)
            return row
        prompt = open_prompt(ep, self.renderer, req.scenario, s.max_context_tokens)
        if prompt is None:
            self.finished(row)
            return row
        row.pending += prompt
        row.budget = turn_budget(ep, s.max_new_tokens, s.max_context_tokens)
        return row

    def accept(self, row: Row, tok: int, logprob: float) -> bool:
        """Record one sampled token; True when it ended the turn (the turn is then closed, the tool
        run and the next turn's tokens pending, or the rollout finished)."""
        traj = row.episode.traj
        row.turn_ids.append(tok)
        row.turn_logprobs.append(logprob)
        traj.append([tok], "model", [logprob], turn=len(traj.turns))
        self.generated_tokens += 1
        on_eos = tok in self.stop_ids
        complete = on_eos or (tok in self.trigger_ids
                              and self.renderer.call_complete(self.renderer.decode(row.turn_ids)))
        if not complete and len(row.turn_ids) < row.budget:
            row.pending = [tok]
            return False
        row.generating = False
        self._end_turn(row, on_eos)
        return True

    def accept_turn(self, row: Row, ids: Sequence[int], logprobs: Sequence[float]) -> int:
        """Record a whole sampled turn (an engine that samples turns, not tokens): its tokens up
        to where the turn ends by the rules above (later ones are dropped: the environment never
        sees them); returns how many were kept."""
        for n, (tok, lp) in enumerate(zip(ids, logprobs), start=1):
            if self.accept(row, int(tok), float(lp)):
                return n
        if ids:  # the engine stopped before any end rule: close the turn at its last token
            row.generating = False
            self._end_turn(row, int(ids[-1]) in self.stop_ids)
        return len(ids)

    def _end_turn(self, row: Row, on_eos: bool) -> None:
        ep, s = row.episode, self.settings
        traj = ep.traj
        last = row.turn_ids[-1]
        text = self.renderer.decode(row.turn_ids[:-1] if on_eos else row.turn_ids)
        traj.messages.append({"role": "assistant", "content": text})
        observation = ep.take_turn(text, num_tokens=len(row.turn_ids))
        row.turn_ids, row.turn_logprobs = [], []
        if observation is None:
            self.finished(row)
            return
        added = append_result(ep, self.renderer, on_eos, observation, s.max_context_tokens)
        if added is None:
            self.finished(row)
            return
        row.pending = [last] + added
        row.budget = turn_budget(ep, s.max_new_tokens, s.max_context_tokens)

    def finished(self, row: Row) -> None:
        traj = row.episode.traj
        if self.settings.check_template and traj.messages and traj.finish_reason != "error":
            problem = self.renderer.check(traj)
            if problem is not None:
                raise TemplateError(f"rollout {traj.scenario_id}/{traj.rollout_index}: {problem}")
        self.on_finish(traj)
