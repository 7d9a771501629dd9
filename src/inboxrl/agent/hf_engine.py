"""The batched, token-faithful multi-turn rollout engine for transformers models.

All live rollouts of a batch advance together: every decoding step is ONE forward pass over
every live row (:class:`~inboxrl.agent.kv_batch.KVBatch`), and the KV cache is kept across turns,
so a new turn only prefills the tokens appended since the previous one.

Step types:

* **shared prefix** (once per batch): the prompt prefix common to all rows (system prompt and
  few-shot example) is computed on one row and repeated over the batch.
* **prefill** (when no row is generating): every row's pending tokens (the prompt, or the end of
  its previous turn + tool result + generation prompt) are appended, left-padded, and each row
  samples the first token of its next turn.
* **decode** (while some row is generating): each generating row feeds its last sampled token and
  samples the next; a row whose turn has ended feeds one of its pending tokens per step (all but
  the last, which the next prefill feeds to get that row's logits), other rows add a hole.

A row's turn ends on an end-of-turn / eos token, when its tool call is complete
(``ChatRenderer.call_complete``, only checked after a token containing ``}`` or ``>``), or at its
token budget ``min(max_new_tokens, max_context_tokens - tokens so far)``. The call is executed
between turns (:class:`~inboxrl.agent.episode.Episode`); before a tool result is appended the
context budget is checked (room for the result, the generation prompt and one token), and a
rollout that does not fit ends with ``context_overflow``. Finished rows leave the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from inboxrl.agent.chat import ChatRenderer, TemplateError
from inboxrl.agent.episode import Episode
from inboxrl.agent.kv_batch import KVBatch
from inboxrl.agent.sampling import row_generator, sample_next
from inboxrl.agent.token_layout import append_result, open_prompt, turn_budget
from inboxrl.agent.trajectory import Trajectory

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate forward


@dataclass
class _Row:
    episode: Episode
    generator: torch.Generator
    pending: list[int] = field(default_factory=list)  # ids appended but not yet in the cache
    turn_ids: list[int] = field(default_factory=list)
    turn_logprobs: list[float] = field(default_factory=list)
    budget: int = 0
    generating: bool = False


class HFEngine:
    """Runs rollouts of a transformers ``policy`` (``.model``, ``.tokenizer``, ``.renderer``)."""

    def __init__(self, policy: Any, settings: Any, on_finish: Callable[[Trajectory], None]) -> None:
        self.model = policy.model
        self.tokenizer = policy.tokenizer
        self.renderer: ChatRenderer = getattr(policy, "renderer", None) or ChatRenderer(self.tokenizer)
        self.settings = settings
        self.on_finish = on_finish
        self.device = getattr(policy, "device", None) or next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.renderer.stop_token_ids[0])
        self.stop_ids = set(self.renderer.stop_token_ids)
        self.trigger_ids = set(self.renderer.stop_trigger_ids())
        self.forward_calls = 0
        self.generated_tokens = 0

    # -- public ----------------------------------------------------------------------------------
    def run(self, requests: Sequence[Any], env_factory: Callable[[Any], Any]) -> list[Trajectory]:
        size = self.settings.batch_size or max(1, len(requests))
        out: list[Trajectory] = []
        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(requests), size):
                    out += self._run_batch(requests[start:start + size], env_factory)
        finally:
            if was_training:
                self.model.train()
        return out

    # -- one batch -------------------------------------------------------------------------------
    def _run_batch(self, requests: Sequence[Any], env_factory: Callable[[Any], Any]) -> list[Trajectory]:
        rows = [self._start(req, env_factory) for req in requests]
        live = [r for r in rows if not r.episode.done]
        kv = KVBatch(self.model, len(live), self.pad_id, self.device)
        self._share_prefix(kv, live)
        while live:
            if any(r.generating for r in live):
                chunks = [self._decode_chunk(r) for r in live]
                sampling = [i for i, r in enumerate(live) if r.generating]
            else:
                chunks = [r.pending for r in live]
                for r in live:
                    r.pending, r.generating = [], True
                sampling = list(range(len(live)))
            logits = kv.forward(chunks)
            self.forward_calls += 1
            picked = [live[i] for i in sampling]
            tokens, logprobs = sample_next(
                logits[sampling], [r.generator for r in picked], self.settings.temperature,
                self.settings.top_p, self.settings.greedy)
            for row, tok, lp in zip(picked, tokens, logprobs):
                self._accept(row, tok, lp)
            keep = [i for i, r in enumerate(live) if not r.episode.done]
            if len(keep) < len(live):
                kv.select(keep)
                kv.compact()
                live = [live[i] for i in keep]
        return [r.episode.traj for r in rows]

    def _share_prefix(self, kv: KVBatch, live: list[_Row]) -> None:
        """Prefill the prompt prefix common to all rows once (every row keeps >= 1 pending
        token, so the first real prefill still yields each row's own logits)."""
        if len(live) < 2:
            return
        first, shared = live[0].pending, min(len(r.pending) for r in live) - 1
        for r in live[1:]:
            shared = next((i for i in range(shared) if r.pending[i] != first[i]), shared)
        if shared >= MIN_SHARED_PREFIX:
            kv.prefill_shared(first[:shared])
            self.forward_calls += 1
            for r in live:
                r.pending = r.pending[shared:]

    @staticmethod
    def _decode_chunk(row: _Row) -> list[int]:
        if row.generating:
            chunk, row.pending = row.pending, []
            return chunk
        if len(row.pending) > 1:
            return [row.pending.pop(0)]
        return []

    def _start(self, req: Any, env_factory: Callable[[Any], Any]) -> _Row:
        s = self.settings
        ep = Episode(req.scenario, req.group_id, req.rollout_index, env_factory, s.max_turns)
        row = _Row(ep, row_generator(s.seed, req.group_id, req.rollout_index))
        if ep.done:
            self._finished(row)
            return row
        prompt = open_prompt(ep, self.renderer, req.scenario, s.max_context_tokens)
        if prompt is None:
            self._finished(row)
            return row
        row.pending += prompt
        row.budget = turn_budget(ep, s.max_new_tokens, s.max_context_tokens)
        return row

    # -- per token / per turn ------------------------------------------------------------------------
    def _accept(self, row: _Row, tok: int, logprob: float) -> None:
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
            return
        row.generating = False
        self._end_turn(row, on_eos)

    def _end_turn(self, row: _Row, on_eos: bool) -> None:
        ep, s = row.episode, self.settings
        traj = ep.traj
        last = row.turn_ids[-1]
        text = self.renderer.decode(row.turn_ids[:-1] if on_eos else row.turn_ids)
        traj.messages.append({"role": "assistant", "content": text})
        observation = ep.take_turn(text, num_tokens=len(row.turn_ids))
        row.turn_ids, row.turn_logprobs = [], []
        if observation is None:
            self._finished(row)
            return
        added = append_result(ep, self.renderer, on_eos, observation, s.max_context_tokens)
        if added is None:
            self._finished(row)
            return
        row.pending = [last] + added
        row.budget = turn_budget(ep, s.max_new_tokens, s.max_context_tokens)

    def _finished(self, row: _Row) -> None:
        traj = row.episode.traj
        if self.settings.check_template and traj.messages and traj.finish_reason != "error":
            problem = self.renderer.check(traj)
            if problem is not None:
                raise TemplateError(f"rollout {traj.scenario_id}/{traj.rollout_index}: {problem}")
        self.on_finish(traj)

