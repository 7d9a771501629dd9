"""The batched, token-faithful multi-turn rollout engine for transformers models.

Up to ``batch_size`` rollouts run at once, each in its own slot of a
:class:`~inboxrl.agent.kv_batch.KVBatch` (one KV cache, every slot at its own length), and the
cache is kept across turns, so a new turn only prefills the tokens appended since the previous one.
Each step of the loop is one forward pass of one of two kinds:

* **prefill** (while some row has pending tokens): the rows whose tokens are pending (their
  prompt, or the end of their previous turn + tool result + generation prompt) are appended in
  one forward over just those rows (chunked prefill), and each samples the first token of its
  next turn;
* **decode** (otherwise): every row feeds its last sampled token and samples the next, one
  forward over all slots; no row waits in lockstep for another and no slot holds holes.

The prompt prefix common to the first batch (system prompt and few-shot example) is computed
once and copied into every slot whose prompt starts with it. When a rollout finishes, the next
request takes its slot (refill), so the batch stays full until the requests run out; then the
slots are compacted. Every rollout samples from its own generator
(:mod:`inboxrl.agent.sampling`), so its tokens do not depend on the batch size or its slot.

Where a turn ends, the tool calls between turns and the context budget are
:mod:`inboxrl.agent.turns`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from inboxrl.agent.kv_batch import KVBatch
from inboxrl.agent.sampling import sample_next
from inboxrl.agent.trajectory import Trajectory
from inboxrl.agent.turns import Row, TurnBook

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate forward


@dataclass
class EngineStats:
    """What the forwards of a run did (for benchmarks): decoding steps, the rows they sampled
    and the context they attended over (summed), and the prefilled tokens."""

    decode_steps: int = 0
    decode_rows: int = 0
    decode_context: int = 0
    prefill_forwards: int = 0
    prefill_tokens: int = 0
    prefix_tokens: int = 0  # shared-prefix tokens copied into slots instead of prefilled

    @property
    def mean_decode_rows(self) -> float:
        return self.decode_rows / max(self.decode_steps, 1)

    @property
    def mean_decode_context(self) -> float:
        return self.decode_context / max(self.decode_rows, 1)


def _prefill_groups(lengths: list[int], waste: float = 0.25) -> list[list[int]]:
    """Indices into ``lengths`` grouped for prefill forwards: longest first, a group grows while
    its right padding stays under ``waste`` of its real tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g and (len(g) + 1) * lengths[g[0]] <= (1 + waste) * (sum(lengths[j] for j in g) + lengths[i]):
            g.append(i)
        else:
            groups.append([i])
    return groups


class HFEngine(TurnBook):
    """Runs rollouts of a transformers ``policy`` (``.model``, ``.tokenizer``, ``.renderer``)."""

    def __init__(self, policy: Any, settings: Any, on_finish: Callable[[Trajectory], None]) -> None:
        super().__init__(policy.tokenizer, getattr(policy, "renderer", None), settings, on_finish)
        self.model = policy.model
        self.device = getattr(policy, "device", None) or next(self.model.parameters()).device
        self.forward_calls = 0
        self.stats = EngineStats()
        self.prefix_len = 0

    # -- public ----------------------------------------------------------------------------------
    def run(self, requests: Sequence[Any], env_factory: Callable[[Any], Any]) -> list[Trajectory]:
        """Run every request to completion; trajectories in request order."""
        if not requests:
            return []
        size = min(self.settings.batch_size or len(requests), len(requests))
        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        try:
            with torch.inference_mode():
                return self._run_all(list(requests), env_factory, size)
        finally:
            if was_training:
                self.model.train()

    # -- the loop --------------------------------------------------------------------------------
    def _run_all(self, requests: list[Any], env_factory: Callable[[Any], Any], size: int) -> list[Trajectory]:
        queue = deque(requests)
        out: list[Trajectory] = []
        live: list[Row] = []
        while queue and len(live) < size:
            row = self.start(queue.popleft(), env_factory)
            out.append(row.episode.traj)
            if not row.episode.done:
                live.append(row)
        kv = KVBatch(self.model, len(live), self.pad_id, self.device)
        prefix = self._common_prefix(live)
        self.prefix_len = len(prefix)
        if prefix:
            kv.set_prefix(prefix)
            self.forward_calls += 1
        for slot, row in enumerate(live):
            self._seat(kv, slot, row, prefix)
        while live:
            pending = [i for i, r in enumerate(live) if not r.generating]
            if pending:
                for group in _prefill_groups([len(live[i].pending) for i in pending]):
                    self._step(kv, live, [pending[j] for j in group])
            else:
                self._step(kv, live, list(range(len(live))))
            live = self._refill(kv, live, queue, env_factory, prefix, out)
        return out

    def _step(self, kv: KVBatch, live: list[Row], slots: list[int]) -> None:
        """One forward over ``slots`` (each feeds its pending tokens) and one sample per row."""
        rows = [live[i] for i in slots]
        logits = kv.forward(slots, [r.pending for r in rows])
        self.forward_calls += 1
        stats = self.stats
        if all(r.generating for r in rows):
            stats.decode_steps += 1
            stats.decode_rows += len(rows)
            stats.decode_context += sum(kv.lengths[i] for i in slots)
        else:
            stats.prefill_forwards += 1
            stats.prefill_tokens += sum(len(r.pending) for r in rows)
        for r in rows:
            r.pending, r.generating = [], True
        tokens, logprobs = sample_next(logits, [r.generator for r in rows], self.settings.temperature,
                                       self.settings.top_p, self.settings.greedy)
        for row, tok, lp in zip(rows, tokens, logprobs):
            self.accept(row, tok, lp)

    def _refill(self, kv: KVBatch, live: list[Row], queue: deque, env_factory: Callable[[Any], Any],
                prefix: list[int], out: list[Trajectory]) -> list[Row]:
        """Seat queued requests in the slots of finished rows; drop the slots left empty."""
        for slot, row in enumerate(live):
            while row.episode.done and queue:
                row = self.start(queue.popleft(), env_factory)
                out.append(row.episode.traj)
                if not row.episode.done:
                    live[slot] = row
                    self._seat(kv, slot, row, prefix)
        keep = [i for i, r in enumerate(live) if not r.episode.done]
        if len(keep) < len(live):
            kv.keep(keep)
            live = [live[i] for i in keep]
        return live

    def _seat(self, kv: KVBatch, slot: int, row: Row, prefix: list[int]) -> None:
        """Put ``row`` (its prompt pending) into ``slot``, starting from the shared prefix when its
        prompt begins with it (at least one prompt token stays pending, for the first logits)."""
        kv.reset(slot)
        n = len(prefix)
        if n and len(row.pending) > n and row.pending[:n] == prefix:
            kv.load_prefix(slot)
            row.pending = row.pending[n:]
            self.stats.prefix_tokens += n

    @staticmethod
    def _common_prefix(live: list[Row]) -> list[int]:
        """The prompt prefix of the first batch worth computing once (>= MIN_SHARED_PREFIX tokens,
        shorter than every prompt); [] for a single row."""
        if len(live) < 2:
            return []
        first, shared = live[0].pending, min(len(r.pending) for r in live) - 1
        for r in live[1:]:
            shared = next((i for i in range(shared) if r.pending[i] != first[i]), shared)
        return list(first[:shared]) if shared >= MIN_SHARED_PREFIX else []
