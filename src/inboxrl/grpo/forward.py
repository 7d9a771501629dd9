"""The training forward pass: log-probs of the trained tokens of a micro-batch.

Two savings, both exact (same numbers up to float rounding, tested against the plain forward):

* **Selective LM head.** The head is applied only at the positions that predict trained tokens
  (a ``[T, V]`` instead of a ``[B, L, V]`` logits tensor) when the logits are exactly
  ``lm_head(decoder(...))`` (Llama, Qwen, Mistral, SmolLM... and their peft wrappers).
* **Shared prompt prefix.** Every rollout of a run starts with the same system prompt and worked
  example (about 640 of the ~1,400 tokens of a default trajectory). When the rows of a micro-batch
  share a prefix of at least ``MIN_SHARED_PREFIX`` tokens that holds no trained target, the
  prefix is run once on one row with the KV cache on, the cache is repeated over the rows, and
  only the rest of each row is run on top of it. Gradients flow through the repeated cache, so
  each prefix weight receives the sum over the rows, as in the plain pass. Used only where the
  cache is the plain full-attention ``DynamicCache`` (no sliding window), and not under activation
  checkpointing: transformers drops a checkpointed layer's cache while training with gradients,
  so there the plain pass is taken.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

from inboxrl.grpo.batching import MicroBatch
from inboxrl.grpo.loss import logprobs_from_logits

MIN_SHARED_PREFIX = 32  # shorter common prefixes are not worth a second decoder call
# config attributes that post-process ``lm_head`` outputs: such models take the full-logits path
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _head_split(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """``(decoder, lm_head)`` when the logits are exactly ``lm_head(decoder(...).last_hidden_state)``
    (Llama, Qwen, Mistral, SmolLM... and their peft wrappers), else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is None or not type(base).__name__.endswith("ForCausalLM"):
        return None
    if any(getattr(cfg, a, None) is not None for a in _LOGIT_POSTPROCESSING):
        return None
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    return (decoder, head) if isinstance(head, torch.nn.Linear) and decoder is not None else None


def shared_prefix_len(mb: MicroBatch) -> int:
    """Length ``P`` of the prefix to run once: the tokens all rows share, cut so that no trained
    target lies in it (``loss_mask[:, :P] == 0``: token ``P``, the first of the rest, is predicted
    from inside the prefix) and every row keeps at least one token after it; 0 when that is
    shorter than ``MIN_SHARED_PREFIX`` or there is a single row."""
    if mb.num_rows < 2:
        return 0
    ids = mb.input_ids
    same = (ids == ids[:1]).all(dim=0).long()
    prefix = int(same.cumprod(0).sum())
    prefix = min(prefix, int(mb.attention_mask.sum(dim=1).min()) - 1)
    trained = mb.loss_mask.any(dim=0).nonzero()
    if len(trained):
        prefix = min(prefix, int(trained[0]))
    return prefix if prefix >= MIN_SHARED_PREFIX else 0


def _prefix_cache(decoder: torch.nn.Module) -> object | None:
    """An empty ``DynamicCache`` for ``decoder`` when all its layers are plain full attention (a
    sliding window would drop prefix columns), else None."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=decoder.config)
    layers = getattr(cache, "layers", None)
    return cache if layers and all(type(layer) is DynamicLayer for layer in layers) else None


def _checkpointing_drops_cache(decoder: torch.nn.Module) -> bool:
    """True when a forward with gradients would run checkpointed layers, which ignore the KV cache."""
    return (decoder.training and torch.is_grad_enabled()
            and any(getattr(m, "gradient_checkpointing", False) is True for m in decoder.modules()))


def _hidden_states(decoder: torch.nn.Module, mb: MicroBatch, share_prefix: bool) -> tuple[torch.Tensor, int]:
    """Last hidden states of positions ``P..L-1``, and ``P`` (0 unless a prefix is shared)."""
    prefix = shared_prefix_len(mb) if share_prefix and not _checkpointing_drops_cache(decoder) else 0
    cache = _prefix_cache(decoder) if prefix else None
    if cache is None:
        out = decoder(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False)
        return out.last_hidden_state, 0
    decoder(input_ids=mb.input_ids[:1, :prefix], cache=cache, use_cache=True)
    cache.batch_repeat_interleave(mb.num_rows)
    rest = decoder(input_ids=mb.input_ids[:, prefix:], attention_mask=mb.attention_mask, cache=cache,
                   use_cache=True)
    return rest.last_hidden_state, prefix


def trained_logprobs(model: torch.nn.Module, mb: MicroBatch, temperature: float = 1.0,
                     with_entropy: bool = True, share_prefix: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``[B, L-1]`` (float32, with grad, 0 off the loss mask) of the trained target tokens,
    and their entropies ``[T]`` (no grad; None unless ``with_entropy``). See the module docstring
    for the selective head and the shared prefix (``share_prefix``); a model whose logits are not
    ``lm_head(hidden)`` gets the full logits, and the same positions are selected."""
    sel = mb.loss_mask > 0
    split = _head_split(model)
    if split is None:
        logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits
        logits = logits[:, :-1][sel]
    else:
        decoder, head = split
        hidden, prefix = _hidden_states(decoder, mb, share_prefix)
        logits = head(hidden[:, :-1][sel[:, prefix:]])
    logp_sel, entropy = logprobs_from_logits(logits, mb.target_ids[sel], temperature, with_entropy)
    logp = torch.zeros(sel.shape, dtype=logp_sel.dtype, device=logp_sel.device).masked_scatter(sel, logp_sel)
    return logp, entropy


@torch.no_grad()
def policy_logprobs(model: torch.nn.Module, micro_batches: Sequence[MicroBatch], temperature: float = 1.0,
                    share_prefix: bool = True) -> list[torch.Tensor]:
    """Log-probs ``[B, L-1]`` of each micro-batch's trained targets under ``model`` as it is now, in
    eval mode without gradients (π_old recomputed by the trainer before an update; the reference
    policy). The model's training mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return [trained_logprobs(model, mb, temperature, with_entropy=False, share_prefix=share_prefix)[0]
                for mb in micro_batches]
    finally:
        model.train(was_training)


@torch.no_grad()
def reference_logprobs(model: torch.nn.Module, micro_batches: Sequence[MicroBatch],
                       ref_model: torch.nn.Module | None = None, temperature: float = 1.0,
                       share_prefix: bool = True) -> list[torch.Tensor]:
    """Log-probs ``[B, L-1]`` of each micro-batch's trained targets under the reference policy.

    The reference is ``ref_model`` when given, else ``model`` with its adapter disabled (peft:
    ``model.disable_adapter()``, no second copy in memory). Raises ``ValueError`` for a model that
    is neither a peft model nor accompanied by ``ref_model``.
    """
    if ref_model is None and not hasattr(model, "disable_adapter"):
        raise ValueError("KL (beta > 0) with full fine-tuning needs ref_model")
    ref = ref_model if ref_model is not None else model
    ctx = model.disable_adapter() if ref_model is None else nullcontext()
    with ctx:
        return policy_logprobs(ref, micro_batches, temperature, share_prefix)
