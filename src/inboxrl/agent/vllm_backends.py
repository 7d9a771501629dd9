"""vLLM back-ends for :class:`inboxrl.agent.vllm_engine.VLLMEngine`, and the policy object that
routes :func:`inboxrl.agent.rollout.run_rollouts` to it.

* :class:`ColocatedBackend`: ``vllm.LLM`` in the trainer's process, on the trainer's GPU
  (``gpu_memory_utilization`` of it), created with ``enable_prefix_caching`` and, when
  ``sleep``, ``enable_sleep_mode``: :meth:`sleep` frees its KV cache and offloads its weights
  (level 1) while the trainer updates, :meth:`wake` restores them. The engine runs in-process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as TRL's colocate mode) so that full weights are
  loaded by reference with ``llm.apply_model(lambda m: m.load_weights(...))``.
* :class:`ServerBackend`: a separate ``vllm serve`` (started by the user with
  ``--enable-prefix-caching --logprobs-mode processed_logprobs``; for LoRA also
  ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; for full fine-tuning
  ``VLLM_SERVER_DEV_MODE=1 --weight-transfer-config '{"backend": "nccl"}'``), driven through
  TRL's ``VLLMClient``: token-id prompts on ``/v1/completions`` with one request per rollout
  (each with its own seed), adapters hot-loaded with ``/v1/load_lora_adapter``, full weights
  broadcast over NCCL (``update_model_params``).

Policy updates (:meth:`VLLMSampler.sync`): a peft model's adapter is saved to
``<adapter_dir>/step_<n>`` and used from then on as ``LoRARequest(f"step_<n>", n + 1, path)``
(a new name and id per step, so vLLM never serves a stale cached adapter); a full model's
weights are pushed and the prefix cache reset.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from inboxrl.agent.vllm_engine import EngineUnavailable, TurnRequest, completion_tokens, import_vllm

MODES = ("colocate", "server")


@dataclass(frozen=True)
class VLLMSettings:
    """How the vLLM engine runs (see the module docstring)."""

    mode: str = "colocate"
    gpu_memory_utilization: float = 0.35
    server_url: str = "http://localhost:8000"
    sleep: bool = True
    dtype: str = "auto"
    max_lora_rank: int = 64
    concurrency: int = 32  # server mode: requests in flight

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"vLLM mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")


class ColocatedBackend:
    """``vllm.LLM`` in this process (see the module docstring)."""

    def __init__(self, model_path: str, settings: VLLMSettings, max_model_len: int, seed: int,
                 lora_rank: int | None) -> None:
        vllm = import_vllm()
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailable("ROLLOUT_ENGINE=vllm needs a CUDA GPU (torch.cuda.is_available() is False)")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs: dict[str, Any] = dict(
            model=str(model_path), dtype=settings.dtype, seed=seed, max_model_len=max_model_len,
            gpu_memory_utilization=settings.gpu_memory_utilization, enable_prefix_caching=True,
            enable_sleep_mode=settings.sleep, logprobs_mode="processed_logprobs")
        if lora_rank is not None:
            kwargs.update(enable_lora=True, max_lora_rank=max(lora_rank, 8), max_loras=1)
        self.llm = vllm.LLM(**kwargs)
        self.lora_request: Any = None
        self.asleep = False
        self.can_sleep = settings.sleep

    def generate(self, turns: Sequence[TurnRequest]) -> list[tuple[list[int], list[float]]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(t.prompt_ids)) for t in turns]
        params = [sampling_params(SamplingParams, t) for t in turns]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        return [completion_tokens(o.outputs[0]) for o in outputs]

    def use_adapter(self, name: str, int_id: int, path: str) -> None:
        from vllm.lora.request import LoRARequest

        self.lora_request = LoRARequest(name, int_id, str(path))

    def load_weights(self, named_tensors: list[tuple[str, Any]]) -> None:
        self.llm.apply_model(lambda model: model.load_weights(weights=named_tensors))
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        if self.can_sleep and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False


def sampling_params(factory: Any, t: TurnRequest) -> Any:
    """``vllm.SamplingParams`` for one turn (``factory`` is the class, so tests can pass a fake)."""
    return factory(n=1, temperature=0.0 if t.greedy else t.temperature, top_p=1.0 if t.greedy else t.top_p,
                   max_tokens=t.max_tokens, seed=t.seed, logprobs=0, stop_token_ids=list(t.stop_token_ids),
                   skip_special_tokens=False, detokenize=False)


class ServerBackend:
    """A running ``vllm serve`` through TRL's ``VLLMClient`` (see the module docstring)."""

    def __init__(self, settings: VLLMSettings, client: Any = None) -> None:
        if client is None:
            import_vllm()
            from trl.generation.vllm_client import VLLMClient

            client = VLLMClient(base_url=settings.server_url, connection_timeout=60.0)
        self.client = client
        self.concurrency = settings.concurrency
        self.model_name = client.model
        self._communicator_ready = False

    def generate(self, turns: Sequence[TurnRequest]) -> list[tuple[list[int], list[float]]]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(turns)))) as pool:
            return list(pool.map(self._one, turns))

    def _one(self, t: TurnRequest) -> tuple[list[int], list[float]]:
        extra = {"model": self.model_name, "seed": t.seed, "stop_token_ids": list(t.stop_token_ids),
                 "skip_special_tokens": False}
        out = self.client.generate([list(t.prompt_ids)], temperature=0.0 if t.greedy else t.temperature,
                                   top_p=1.0 if t.greedy else t.top_p, max_tokens=t.max_tokens, logprobs=0,
                                   generation_kwargs=extra)
        ids = [int(i) for i in out["completion_ids"][0]]
        positions = out["logprobs"][0] if out.get("logprobs") else None
        tokens = out["logprob_token_ids"][0] if out.get("logprob_token_ids") else None
        if ids and (positions is None or tokens is None or len(positions) < len(ids)):
            raise ValueError("the vLLM server returned no log-prob for a sampled token")
        logprobs = []
        for i, tok in enumerate(ids):
            table = dict(zip(tokens[i], positions[i]))
            if table.get(tok) is None:
                raise ValueError(f"the vLLM server's log-probs at position {i} miss the sampled token {tok}")
            logprobs.append(float(table[tok]))
        return ids, logprobs

    def use_adapter(self, name: str, int_id: int, path: str) -> None:
        self.client._post(f"{self.client.base_url}/v1/load_lora_adapter",
                          json={"lora_name": name, "lora_path": str(path)})
        self.model_name = name

    def load_weights(self, named_tensors: list[tuple[str, Any]]) -> None:
        if not self._communicator_ready:
            self.client.init_communicator(device="cuda")
            self._communicator_ready = True
        metadata = [(n, str(t.dtype).removeprefix("torch."), list(t.shape)) for n, t in named_tensors]
        self.client.update_named_params(metadata, iter(named_tensors))
        self.client.reset_prefix_cache()

    def sleep(self) -> None:  # a separate server keeps its GPU
        return None

    def wake(self) -> None:
        return None


def vllm_weight_names(model: Any) -> list[tuple[str, Any]]:
    """``(name, tensor)`` of a transformers model's weights as vLLM's ``load_weights`` takes them
    (the Hugging Face checkpoint names); for a peft model its base weights (adapter weights left
    out, ``base_model.model.`` and ``.base_layer`` removed from the names)."""
    out = []
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        out.append((name.removeprefix("base_model.model.").replace(".base_layer", ""), param.detach()))
    return out


class VLLMSampler:
    """The vLLM side of a training run: a back-end, the policy version it serves, and
    :meth:`sync` to push each update."""

    def __init__(self, backend: Any, adapter_dir: str | Path | None = None) -> None:
        self.backend = backend
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.version = 0

    def start(self, model: Any, step: int) -> None:
        """Before the first rollout: the trainer's weights (a warm start or a resumed run differ
        from the model directory vLLM loaded), and a peft model's adapter as of ``step``."""
        self.backend.wake()
        self.backend.load_weights(vllm_weight_names(model))
        if hasattr(model, "peft_config"):
            self.sync(model, step)

    def sync(self, model: Any, step: int) -> None:
        """Push ``model`` (after the update of ``step``): a peft adapter as a new LoRARequest,
        otherwise the full weights."""
        self.backend.wake()
        if hasattr(model, "peft_config"):
            if self.adapter_dir is None:
                raise ValueError("a LoRA policy needs an adapter_dir to hand adapters to vLLM")
            path = self.adapter_dir / f"step_{step:04d}"
            model.save_pretrained(str(path))
            self.backend.use_adapter(f"step_{step:04d}", step + 1, str(path))
        else:
            self.backend.load_weights(vllm_weight_names(model))
        self.version = step + 1


class VLLMPolicy:
    """What :func:`~inboxrl.agent.rollout.run_rollouts` is given to sample with vLLM: the
    trainer's tokenizer and renderer, and the sampler (``.vllm``)."""

    def __init__(self, sampler: VLLMSampler, tokenizer: Any, renderer: Any) -> None:
        self.vllm = sampler
        self.tokenizer = tokenizer
        self.renderer = renderer
