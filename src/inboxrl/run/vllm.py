"""``ROLLOUT_ENGINE=vllm``: the vLLM policy a training run samples with (see
:mod:`inboxrl.agent.vllm_backends`). vLLM loads the run's model directory (for a LoRA adapter
checkpoint, its base model); the trainer's own weights are pushed before the first rollout and
after every update."""
from __future__ import annotations

import json
from pathlib import Path

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


def vllm_rollout_policy(settings: Settings, policy: HFPolicy, output_dir: Path) -> VLLMPolicy:
    r, m = settings.rollout, settings.model
    vs = VLLMSettings(mode=r.vllm_mode, gpu_memory_utilization=r.vllm_gpu_memory_utilization,
                      server_url=r.vllm_server_url,
                      dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(m.dtype, "auto"))
    if vs.mode == "server":
        backend = ServerBackend(vs)
    else:
        backend = ColocatedBackend(vllm_model_dir(model_source(m)), vs, r.max_context_tokens, settings.run.seed,
                                   m.lora_r if m.use_lora else None)
    sampler = VLLMSampler(backend, adapter_dir=output_dir / "vllm_adapters")
    return VLLMPolicy(sampler, policy.tokenizer, policy.renderer)
