"""A batch of token streams sharing one KV cache across turns.

Each row is one rollout's token stream. :meth:`KVBatch.forward` appends a chunk of new tokens to
every row at once, left-padding shorter chunks; padded slots are *holes* (attention-mask 0) that
no later token attends to. Positions are explicit, ``cumsum(mask) - 1``, so a row's tokens get
exactly the positions they would have in an unpadded single-row forward, and holes anywhere
(left padding, or idle rows during another row's decoding) do not shift them. A prefix common
to all rows is computed once (:meth:`prefill_shared`). Rows are dropped
with :meth:`select` (the cache's ``batch_select_indices``), and columns that became holes in every
remaining row are removed by :meth:`compact`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch


def make_cache(config: Any) -> Any:
    """A ``DynamicCache`` whose full-attention layers are :class:`GrowingLayer` (in-place
    appends); layers of any other kind (e.g. sliding windows) are kept as transformers made them."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    if not cache.layers:
        cache.layer_class_to_replicate = GrowingLayer
    else:
        cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _growing_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class _GrowingLayer(DynamicLayer):
        """A ``DynamicLayer`` that appends in place into over-allocated buffers (capacity grows
        by 1.5x), instead of ``torch.cat`` copying the whole cache at every decoding step.
        ``keys``/``values`` are views of the first ``length`` columns. Any outside change of
        ``keys``/``values`` (row selection, repeat, compaction) is picked up at the next
        update, which adopts the new tensors as buffers."""

        _kbuf: torch.Tensor | None = None
        _vbuf: torch.Tensor | None = None
        _view: torch.Tensor | None = None

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            if self.keys is not self._view:  # first update, or changed from outside
                empty = self.keys is None or self.keys.numel() == 0
                self._kbuf = None if empty else self.keys
                self._vbuf = None if empty else self.values
            length = 0 if self._kbuf is None else self.keys.shape[-2]
            need = length + key_states.shape[-2]
            if self._kbuf is None or need > self._kbuf.shape[-2]:
                self._grow(key_states, value_states, length, need)
            self._kbuf[:, :, length:need] = key_states
            self._vbuf[:, :, length:need] = value_states
            self.keys, self.values = self._kbuf[:, :, :need], self._vbuf[:, :, :need]
            self._view = self.keys
            return self.keys, self.values

        def _grow(self, k: torch.Tensor, v: torch.Tensor, length: int, need: int) -> None:
            cap = max(64, need + need // 2)
            kb = k.new_empty((k.shape[0], k.shape[1], cap, k.shape[3]))
            vb = v.new_empty((v.shape[0], v.shape[1], cap, v.shape[3]))
            if self._kbuf is not None and length:
                kb[:, :, :length] = self._kbuf[:, :, :length]
                vb[:, :, :length] = self._vbuf[:, :, :length]
            self._kbuf, self._vbuf = kb, vb

    return _GrowingLayer


GrowingLayer = _growing_layer_class()


class KVBatch:
    """One ``DynamicCache`` and one 2-D attention mask for ``rows`` token streams."""

    def __init__(self, model: Any, rows: int, pad_id: int, device: torch.device) -> None:
        self.cache = make_cache(getattr(model, "config", None))
        self.model = model
        self.pad_id = int(pad_id)
        self.device = device
        self.mask = torch.zeros((rows, 0), dtype=torch.long, device=device)
        self.forward_calls = 0
        self.tokens_in = 0

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    def forward(self, chunks: Sequence[Sequence[int]]) -> torch.Tensor:
        """Append ``chunks[r]`` to row ``r`` (an empty chunk appends only holes) with one forward
        pass and return the float32 logits at each row's last column, shape ``(rows, vocab)``.
        A row whose chunk is empty gets meaningless logits."""
        if len(chunks) != self.rows:
            raise ValueError(f"{len(chunks)} chunks for {self.rows} rows")
        width = max(1, max(len(c) for c in chunks))
        ids = torch.full((self.rows, width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((self.rows, width), dtype=torch.long)
        for r, chunk in enumerate(chunks):
            if chunk:
                ids[r, width - len(chunk):] = torch.tensor(list(chunk), dtype=torch.long)
                new_mask[r, width - len(chunk):] = 1
        self.mask = torch.cat([self.mask, new_mask.to(self.device)], dim=1)
        positions = (torch.cumsum(self.mask, dim=1) - 1)[:, -width:].clamp(min=0)
        out = self.model(input_ids=ids.to(self.device), attention_mask=self.mask,
                         position_ids=positions, cache=self.cache, use_cache=True,
                         logits_to_keep=1)
        self.forward_calls += 1
        self.tokens_in += int(new_mask.sum())
        return out.logits[:, -1, :].float()

    def prefill_shared(self, prefix: Sequence[int]) -> None:
        """Start every row with the same ``prefix`` (e.g. system prompt + few-shot example),
        computed once on one row and repeated over the batch. Only valid on an empty batch."""
        if self.width:
            raise ValueError("prefill_shared needs an empty batch")
        if not prefix:
            return
        ids = torch.tensor([list(prefix)], dtype=torch.long, device=self.device)
        self.model(input_ids=ids, attention_mask=torch.ones_like(ids), cache=self.cache,
                   use_cache=True, logits_to_keep=1)
        self.cache.batch_repeat_interleave(self.rows)
        self.mask = torch.ones((self.rows, len(prefix)), dtype=torch.long, device=self.device)
        self.forward_calls += 1
        self.tokens_in += len(prefix)

    def select(self, keep: Sequence[int]) -> None:
        """Keep only rows ``keep`` (in that order)."""
        if list(keep) == list(range(self.rows)):
            return
        idx = torch.tensor(list(keep), dtype=torch.long, device=self.device)
        if self.width:
            self.cache.batch_select_indices(idx)
        self.mask = self.mask[idx]

    def compact(self) -> None:
        """Drop cache columns that are holes in every row (positions are unaffected)."""
        if not self.width or self.rows == 0:
            return
        used = self.mask.any(dim=0)
        if bool(used.all()):
            return
        cols = torch.nonzero(used)[:, 0]
        layers = getattr(self.cache, "layers", None)
        if not layers or not all(_plain_layer(layer, self.width) for layer in layers):
            return  # an unexpected layout (e.g. a sliding window): leave the cache alone
        for layer in layers:
            layer.keys = layer.keys.index_select(2, cols)
            layer.values = layer.values.index_select(2, cols)
        self.mask = self.mask[:, cols]


def _plain_layer(layer: Any, width: int) -> bool:
    """A full-attention layer whose keys/values cover every mask column."""
    keys = getattr(layer, "keys", None)
    values = getattr(layer, "values", None)
    return (isinstance(layer, GrowingLayer) and isinstance(keys, torch.Tensor)
            and isinstance(values, torch.Tensor) and keys.dim() == 4 and keys.shape[2] == width)
