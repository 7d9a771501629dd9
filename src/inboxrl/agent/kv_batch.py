"""A KV cache of ``slots`` token streams, each at its own length, for the rollout engine.

Every layer keeps one buffer ``[slots, kv_heads, capacity, head_dim]`` for keys and one for values;
slot ``s`` holds the first ``lengths[s]`` positions of its stream, packed from column 0 (no holes).
:meth:`KVBatch.forward` appends a chunk of new tokens to any subset of slots with one forward pass:

* chunks are right-padded to the longest; row ``r``'s chunk is written at columns
  ``lengths[r] ..`` and its length then advances by the real tokens only, so the keys of the
  padding are overwritten by the slot's next chunk;
* positions are ``lengths[r] + j`` (what an unpadded single-stream forward would use), and the
  boolean 4-D mask lets the query at chunk index ``j`` of row ``r`` see columns ``0 ..
  lengths[r] + j`` of its own slot (transformers passes a prepared 4-D mask to the attention
  kernel as it is);
* the logits are taken only at each row's last real token (``logits_to_keep`` per row).

A forward over every slot in slot order attends over views of the buffers (no copy); a subset
(a prefill of the rows whose tool result is pending) gathers its rows first. Rows never wait
for each other, so a decoding step feeds exactly one token per generating row.
:meth:`set_prefix` / :meth:`load_prefix` compute a prompt prefix common to all rollouts once
and copy its keys/values into any slot (also a slot refilled with a new rollout), and
:meth:`keep` drops slots. Only full-attention models are supported (:func:`supported`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch


def supported(model: Any) -> str | None:
    """None when every attention layer of ``model`` is full (causal) attention, else the reason."""
    config = getattr(model, "config", None)
    config = getattr(config, "get_text_config", lambda: config)() if config is not None else None
    types = getattr(config, "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        return f"layer types {sorted(set(types))} (only full attention is supported)"
    if types is None and getattr(config, "use_sliding_window", False):
        return "sliding-window attention (only full attention is supported)"
    return None


class SlotCache:
    """The transformers cache object of a :class:`KVBatch`: ``update`` writes each layer's new
    keys/values where the current :meth:`plan` says and returns what attention reads."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self._rows: torch.Tensor | None = None  # None: every slot, in order
        self._write_rows: torch.Tensor | None = None  # [n, 1]
        self._write_cols: torch.Tensor | None = None  # [n, width]
        self._kv_len = 0
        self.plan_rows: list[int] = []
        self.plan_starts: list[int] = []
        self.plan_sizes: list[int] = []

    def plan(self, rows: torch.Tensor | None, lengths: torch.Tensor, width: int, kv_len: int,
             described: tuple[list[int], list[int], list[int]] = ([], [], [])) -> None:
        """The next forward appends ``width`` columns at ``lengths`` to slots ``rows``;
        ``described``: (slots, their lengths before, their real chunk sizes) as lists, kept as
        ``plan_rows``/``plan_starts``/``plan_sizes`` for whoever wraps the model."""
        self.plan_rows, self.plan_starts, self.plan_sizes = described
        self._rows = rows
        slot_ids = rows if rows is not None else torch.arange(len(lengths), device=lengths.device)
        self._write_rows = slot_ids[:, None]
        self._write_cols = lengths[:, None] + torch.arange(width, device=lengths.device)[None, :]
        self._kv_len = kv_len

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        kb = self._buffer(self.keys, layer_idx, key_states)
        vb = self._buffer(self.values, layer_idx, value_states)
        kb[self._write_rows, :, self._write_cols] = key_states.transpose(1, 2)
        vb[self._write_rows, :, self._write_cols] = value_states.transpose(1, 2)
        n = self._kv_len
        if self._rows is None:
            return kb[:, :, :n], vb[:, :, :n]
        return kb[:, :, :n].index_select(0, self._rows), vb[:, :, :n].index_select(0, self._rows)

    def _buffer(self, store: dict[int, torch.Tensor], layer: int, states: torch.Tensor) -> torch.Tensor:
        buf = store.get(layer)
        need = self._kv_len
        if buf is None or buf.shape[2] < need:
            cap = max(64, need + need // 2)
            new = states.new_zeros((self.slots, states.shape[1], cap, states.shape[3]))
            if buf is not None:
                new[:, :, :buf.shape[2]] = buf
            store[layer] = buf = new
        return buf

    def select(self, idx: torch.Tensor) -> None:
        for store in (self.keys, self.values):
            for layer, buf in store.items():
                store[layer] = buf.index_select(0, idx)
        self.slots = len(idx)

    # what transformers may ask a cache for
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._kv_len


class KVBatch:
    """``slots`` token streams of ``model`` sharing one :class:`SlotCache`; see the module doc."""

    def __init__(self, model: Any, slots: int, pad_id: int, device: torch.device) -> None:
        reason = supported(model)
        if reason is not None:
            raise ValueError(f"the rollout engine cannot cache this model: {reason}")
        self.model = model
        self.pad_id = int(pad_id)
        self.device = device
        self.cache = SlotCache(slots)
        self.lengths = [0] * slots
        self._prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.prefix_len = 0
        self.forward_calls = 0
        self.tokens_in = 0

    @property
    def slots(self) -> int:
        return len(self.lengths)

    def forward(self, rows: Sequence[int], chunks: Sequence[Sequence[int]]) -> torch.Tensor:
        """Append ``chunks[i]`` (non-empty) to slot ``rows[i]`` with one forward pass; returns the
        float32 logits after each chunk's last token, shape ``(len(rows), vocab)``."""
        if len(rows) != len(chunks) or not rows or any(len(c) == 0 for c in chunks):
            raise ValueError("one non-empty chunk per row")
        n, width = len(rows), max(len(c) for c in chunks)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        for i, chunk in enumerate(chunks):
            ids[i, :len(chunk)] = torch.tensor(list(chunk), dtype=torch.long)
        start = torch.tensor([self.lengths[r] for r in rows], dtype=torch.long, device=self.device)
        kv_len = int(start.max()) + width
        every = list(rows) == list(range(self.slots))
        row_t = None if every else torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.cache.plan(row_t, start, width, kv_len,
                        (list(rows), [self.lengths[r] for r in rows], [len(c) for c in chunks]))
        positions = start[:, None] + torch.arange(width, device=self.device)[None, :]
        mask = torch.arange(kv_len, device=self.device)[None, None, :] <= positions[:, :, None]
        last = torch.tensor([len(c) - 1 for c in chunks], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask[:, None],
                         position_ids=positions, cache=self.cache, use_cache=True,
                         logits_to_keep=1 if width == 1 else last[:, None])
        for r, chunk in zip(rows, chunks):
            self.lengths[r] += len(chunk)
        self.forward_calls += 1
        self.tokens_in += sum(len(c) for c in chunks)
        return out.logits[:, -1, :].float()

    def set_prefix(self, prefix: Sequence[int]) -> None:
        """Compute ``prefix`` once (in slot 0) and keep its keys/values for :meth:`load_prefix`.
        Only on an empty batch."""
        if any(self.lengths):
            raise ValueError("set_prefix needs an empty batch")
        if not prefix:
            return
        self.forward([0], [list(prefix)])
        n = len(prefix)
        layers = sorted(self.cache.keys)
        self._prefix = [(self.cache.keys[i][0, :, :n].clone(), self.cache.values[i][0, :, :n].clone())
                        for i in layers]
        self.prefix_len = n
        self.lengths[0] = 0

    def load_prefix(self, slot: int) -> None:
        """Start ``slot`` (emptied) with the prefix of :meth:`set_prefix`."""
        n = self.prefix_len
        for i, (k, v) in enumerate(self._prefix):
            self.cache.keys[i][slot, :, :n] = k
            self.cache.values[i][slot, :, :n] = v
        self.lengths[slot] = n

    def reset(self, slot: int) -> None:
        """Empty ``slot`` (its columns are overwritten by the next stream put there)."""
        self.lengths[slot] = 0

    def keep(self, slots: Sequence[int]) -> None:
        """Keep only ``slots`` (in that order); they become slots ``0 .. len(slots) - 1``."""
        if list(slots) == list(range(self.slots)):
            return
        idx = torch.tensor(list(slots), dtype=torch.long, device=self.device)
        self.cache.select(idx)
        self.lengths = [self.lengths[s] for s in slots]
