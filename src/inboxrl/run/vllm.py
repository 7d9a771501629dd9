"""``ROLLOUT_ENGINE=vllm``: the vLLM policy a run samples with, for training and for the
``inboxrl eval`` verb alike (see :mod:`inboxrl.agent.vllm_backends`). vLLM loads the run's model
directory (for a LoRA adapter checkpoint, its base model); the trainer's own weights are pushed
before the first rollout and, in training, after every update."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inboxrl.agent.vllm_backends import ColocatedBackend, ServerBackend, VLLMPolicy, VLLMSampler, VLLMSettings
from inboxrl.policy.hf import HFPolicy
from inboxrl.run.model import model_source
from inboxrl.settings.sections import Settings


def vllm_model_dir(source: str) -> str:
    """A directory vLLM can load: ``source``, or the base model of a LoRA adapter checkpoint."""
    config = Path(source) / "adapter_config.json"
    if config.exists():
        return str(json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"])
    return source


def lora_rank(model: Any) -> int | None:
    """The largest LoRA rank of a peft model's adapters (vLLM's ``max_lora_rank``); None for a
    plain model (its full weights are pushed instead)."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    return max(int(c.r) for c in configs.values())


def vllm_rollout_policy(settings: Settings, policy: HFPolicy, output_dir: Path) -> VLLMPolicy:
    r, m = settings.rollout, settings.model
    vs = VLLMSettings(mode=r.vllm_mode, gpu_memory_utilization=r.vllm_gpu_memory_utilization,
                      server_url=r.vllm_server_url,
                      dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(m.dtype, "auto"))
    if vs.mode == "server":
        backend = ServerBackend(vs)
    else:
        backend = ColocatedBackend(vllm_model_dir(model_source(m)), vs, r.max_context_tokens, settings.run.seed,
                                   lora_rank(policy.model))
    sampler = VLLMSampler(backend, adapter_dir=Path(output_dir) / "vllm_adapters")
    return VLLMPolicy(sampler, policy.tokenizer, policy.renderer)


def select_rollout_policy(settings: Settings, policy: HFPolicy, output_dir: Path, notice: Any) -> VLLMPolicy | None:
    """The engine ``rollout_engine`` selects, the one choice training and ``inboxrl eval`` share:
    None for ``hf`` (``policy`` samples on the transformers engine), a :class:`VLLMPolicy` for
    ``vllm`` (not started: :meth:`VLLMSampler.start` pushes the policy's weights to it)."""
    if settings.rollout.rollout_engine != "vllm":
        return None
    rollout_policy = vllm_rollout_policy(settings, policy, output_dir)
    notice(f"Rollouts: vLLM ({settings.rollout.vllm_mode})")
    return rollout_policy
