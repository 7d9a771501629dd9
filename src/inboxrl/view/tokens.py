"""Token text for the rollout pages' token view: the run's tokenizer, found without loading a model.

The trajectories hold token ids only. The tokenizer is looked up, in order, in ``--tokenizer``,
``{output_dir}/best``, the run's ``init_from`` and ``model_name`` (a local directory, the
already-converted default model, or a hub id in the local Hugging Face cache; nothing is
downloaded or converted). Without one the token view shows ids (``#1234``) and says why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from markupsafe import Markup, escape

from inboxrl.agent.trajectory import MODEL, Trajectory


def _candidates(output_dir: Path, config: dict[str, Any] | None, explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    cands = [str(output_dir / "best")]
    cfg = config or {}
    for key in ("init_from", "model_name"):
        name = str(cfg.get(key) or "").strip()
        if not name:
            continue
        if name.lower() == "default":
            from inboxrl.policy.default_model import MODEL_DIRNAME, cache_root, is_complete

            target = cache_root() / "models" / MODEL_DIRNAME
            if is_complete(target):
                cands.append(str(target))
            continue
        cands.append(name)
    return cands


def find_tokenizer(output_dir: Path, config: dict[str, Any] | None,
                   explicit: str | None = None) -> tuple[Any, str]:
    """``(tokenizer or None, where it came from or why there is none)``."""
    tried = []
    for cand in _candidates(output_dir, config, explicit):
        p = Path(cand).expanduser()
        if p.is_dir() and not any((p / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
            tried.append(cand)
            continue
        if not p.exists() and ("/" not in cand or cand.startswith((".", "/", "~"))):
            tried.append(cand)
            continue
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(p) if p.exists() else cand, local_files_only=True), cand
        except Exception:  # noqa: BLE001 - any failure just means "not this candidate"
            tried.append(cand)
    return None, "no tokenizer found (tried: " + (", ".join(tried) or "nothing") + "); token ids shown"


CACHE_MIN_RUN, CACHE_RUNS = 64, 512


class TokenText:
    """Token ids to text: one id at a time (cached) or a run of ids decoded together."""

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}
        self._escaped: dict[int, str] = {}
        self._runs: dict[tuple[int, ...], str] = {}
        self._fast = getattr(tokenizer, "backend_tokenizer", None)

    def piece(self, token_id: int) -> str:
        s = self._cache.get(token_id)
        if s is None:
            s = self._decode([token_id])
            self._cache[token_id] = s
        return s

    def escaped_piece(self, token_id: int) -> str:
        s = self._escaped.get(token_id)
        if s is None:
            s = str(escape(self.piece(token_id)))
            self._escaped[token_id] = s
        return s

    def text(self, ids: Sequence[int]) -> str:
        """A run of ids decoded together; long runs are cached (every rollout of a run repeats
        the same system prompt)."""
        if self.tokenizer is None:
            return "".join(self.piece(i) for i in ids)
        if len(ids) < CACHE_MIN_RUN:
            return self._decode(list(ids))
        key = tuple(ids)
        s = self._runs.get(key)
        if s is None:
            if len(self._runs) >= CACHE_RUNS:
                self._runs.clear()
            s = self._runs[key] = self._decode(list(ids))
        return s

    def _decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return "".join(f"#{i} " for i in ids)
        try:
            if self._fast is not None:  # the Rust tokenizer: same text, no per-id Python checks
                return self._fast.decode(ids, skip_special_tokens=False)
            return self.tokenizer.decode(ids, skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
        except Exception:  # noqa: BLE001 - an id outside the vocabulary
            return "".join(f"#{i}" for i in ids)


def token_view_html(t: Trajectory, text: TokenText) -> Markup:
    """The token view of one trajectory as HTML: consecutive non-model tokens of one source in
    one ``<span class="tok src-SOURCE">``; each model token in its own span whose hover text
    (``title``) gives its turn, sampling log-prob and the advantage the loss used for it.

    Written by hand rather than by a template loop: a real run has millions of model tokens.
    Every piece of text is escaped.
    """
    adv = t.token_advantages()
    ids, sources, lps, turns = t.token_ids, t.sources, t.logprobs, t.turn_index
    parts: list[str] = []
    i, n = 0, len(ids)
    while i < n:
        src = sources[i]
        if src == MODEL:
            parts.append(f'<span class="tok src-model" title="turn {turns[i] + 1} · log-prob '
                         f'{lps[i]:.4f} · advantage {adv[i]:+.4f}">{text.escaped_piece(ids[i])}</span>')
            i += 1
            continue
        j = i
        while j < n and sources[j] == src:
            j += 1
        parts.append(f'<span class="tok src-{escape(src)}" title="{escape(src)}: {j - i} tokens">'
                     f'{escape(text.text(ids[i:j]))}</span>')
        i = j
    return Markup("".join(parts))
