"""The vLLM rollout engine (GPU; ``pip install 'inboxrl[vllm]'``), behind the same rollout
function as the transformers engine (:func:`inboxrl.agent.rollout.run_rollouts`).

Token in, token out: every turn sends each live rollout's whole context as token ids
(``TokensPrompt(prompt_token_ids=...)``) and takes back the sampled ids with the log-prob of each
(``SamplingParams(logprobs=0)``: only the sampled token's); the trainer never re-tokenises. The
turn logic (where a turn ends, the tool call, the context budget) is the transformers engine's
(:mod:`inboxrl.agent.turns`): vLLM stops at a stop token or the turn budget, and a turn whose
tool call completes earlier is cut there (the tokens after it are dropped, as the transformers
engine would never have sampled them). Multi-turn contexts are re-sent whole each turn and
vLLM's prefix cache (``enable_prefix_caching``) recomputes only the new tokens. Sampling is
seeded per (seed, group, rollout, turn) (``SamplingParams(seed=...)``), so a rollout's draws do
not depend on the batch it is in (vLLM's own generator, not the transformers engine's: the two
engines draw different tokens from the same seeds).

Log-probs are those of the sampling distribution ``softmax(logits / T)`` (vLLM's
``logprobs_mode="processed_logprobs"``, as for the transformers engine; with ``top_p < 1`` vLLM
renormalises over the nucleus). vLLM computes them with its own kernels, so they differ a
little from the trainer's: the GRPO step measures the gap (``train/mismatch_kl``,
``train/probs_corr``) and corrects it with ``recompute_old_logprobs`` + truncated importance
sampling (:mod:`inboxrl.grpo.mismatch`).

Two back-ends (:mod:`inboxrl.agent.vllm_backends`): ``colocate`` runs ``vllm.LLM`` in the trainer's
process on the same GPU (asleep during the update), ``server`` talks to a separate ``vllm
serve`` over its OpenAI-compatible API. After each update the new policy is pushed: a LoRA
adapter as a new ``LoRARequest`` per step, full weights by ``load_weights`` (colocated) or over
NCCL (server).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from inboxrl.agent.trajectory import Trajectory
from inboxrl.agent.turns import Row, TurnBook
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import VLLM_MISSING


class EngineUnavailable(ConfigError):
    """The chosen rollout engine cannot run here (its package or its hardware is missing): a
    settings error (one message, exit 2)."""


def import_vllm() -> Any:
    """The ``vllm`` module, or :class:`EngineUnavailable` with one clear message."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineUnavailable(f"{VLLM_MISSING} (import vllm: {exc})") from exc
    return vllm


@dataclass(frozen=True)
class TurnRequest:
    """One rollout's next turn: its whole context and how to sample it."""

    prompt_ids: list[int]
    max_tokens: int
    seed: int
    temperature: float
    top_p: float
    greedy: bool
    stop_token_ids: tuple[int, ...]


def turn_seed(seed: int, group_id: int, rollout_index: int, turn: int) -> int:
    """A stable 31-bit seed for one turn of one rollout."""
    digest = hashlib.sha256(f"{seed}:{group_id}:{rollout_index}:{turn}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def completion_tokens(completion: Any) -> tuple[list[int], list[float]]:
    """Sampled ids and their log-probs from a vLLM ``CompletionOutput`` (``token_ids``, and
    ``logprobs``: one ``{token_id: Logprob}`` mapping per position, with ``SamplingParams(logprobs=0)``
    holding the sampled token)."""
    ids = [int(t) for t in completion.token_ids]
    positions = completion.logprobs
    if ids and (positions is None or len(positions) < len(ids)):
        raise ValueError("vLLM returned no log-prob for a sampled token (SamplingParams(logprobs=0) "
                         "is required)")
    logprobs = []
    for i, tok in enumerate(ids):
        entry = positions[i].get(tok)
        if entry is None:
            raise ValueError(f"vLLM's log-probs at position {i} do not include the sampled token {tok}")
        logprobs.append(float(getattr(entry, "logprob", entry)))
    return ids, logprobs


class VLLMEngine(TurnBook):
    """Runs rollouts turn by turn on a vLLM back-end (``backend.generate(list[TurnRequest]) ->
    list[(ids, logprobs)]``); ``tokenizer``/``renderer`` are the trainer's."""

    def __init__(self, backend: Any, tokenizer: Any, renderer: Any, settings: Any,
                 on_finish: Callable[[Trajectory], None]) -> None:
        super().__init__(tokenizer, renderer, settings, on_finish)
        self.backend = backend
        self.generate_calls = 0

    def run(self, requests: Sequence[Any], env_factory: Callable[[Any], Any]) -> list[Trajectory]:
        """Run every request to completion; trajectories in request order."""
        rows = [self.start(req, env_factory) for req in requests]
        size = self.settings.batch_size or len(rows) or 1
        live = [r for r in rows if not r.episode.done]
        while live:
            for start in range(0, len(live), size):
                self._turn(live[start:start + size])
            live = [r for r in live if not r.episode.done]
        return [r.episode.traj for r in rows]

    def _turn(self, rows: list[Row]) -> None:
        """One turn of every row: one batched generate call, then each row's turn recorded."""
        s = self.settings
        stop = tuple(sorted(self.stop_ids))
        turn_requests = []
        for r in rows:
            traj = r.episode.traj
            turn_requests.append(TurnRequest(
                prompt_ids=list(traj.token_ids), max_tokens=r.budget,
                seed=turn_seed(s.seed, traj.group_id, traj.rollout_index, len(traj.turns)),
                temperature=s.temperature, top_p=s.top_p, greedy=s.greedy, stop_token_ids=stop))
            r.pending, r.generating = [], True
        outputs = self.backend.generate(turn_requests)
        self.generate_calls += 1
        if len(outputs) != len(rows):
            raise ValueError(f"the vLLM back-end returned {len(outputs)} completions for {len(rows)} prompts")
        for row, (ids, logprobs) in zip(rows, outputs):
            if not ids:
                raise ValueError("the vLLM back-end returned an empty completion")
            self.accept_turn(row, ids, logprobs)
