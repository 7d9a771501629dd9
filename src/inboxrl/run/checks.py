"""Checks a training run makes before it spends time: an output directory it can write, and a
context budget in which the model can write at least one token. Each failure is a
:class:`~inboxrl.settings.base.ConfigError` naming the setting to change (exit status 2)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from inboxrl.settings.base import ConfigError


def usable_output_dir(path: str | Path, name: str = "output_dir", flag: str = "--output-dir") -> Path:
    """Create ``path`` (and its parents) and write a probe file in it; ``ConfigError`` when that
    fails. ``name`` and ``flag`` say in the message what the directory is and how to choose another."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {path} is not a directory; choose another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"{name} {path} cannot be used: {reason}"
                          f"{f' ({e.filename})' if e.filename and str(e.filename) != str(path) else ''}; "
                          f"choose another {flag} (a writable directory)") from None
    return path


def check_context_budget(renderer: Any, scenarios: Sequence[Any], max_context_tokens: int, max_tokens: int) -> int:
    """The longest prompt (tokens) of ``scenarios``; ``ConfigError`` when it leaves no room in
    ``max_context_tokens`` for a single model token (every rollout would end with
    ``context_overflow`` before the model wrote anything: nothing to train on)."""
    longest, which = 0, None
    for scenario in scenarios:
        n = sum(len(ids) for ids, _ in renderer.prompt_segments(scenario))
        if n > longest:
            longest, which = n, scenario
    if longest + 1 > max_context_tokens:
        raise ConfigError(
            f"max_context_tokens={max_context_tokens} leaves no room for the model to write a token: the prompt "
            f"of scenario {getattr(which, 'id', '?')} alone takes {longest} tokens; set --max-context-tokens to "
            f"at least {longest + max_tokens} (the prompt and one turn of max_tokens={max_tokens})")
    return longest


def frozen_reference(model: Any) -> Any:
    """A frozen copy of ``model`` (the KL reference of full fine-tuning, beta > 0), in eval mode."""
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def check_vllm(settings: Any, world_size: int) -> None:
    """``rollout_engine=vllm`` with what it cannot serve: several training processes (under torchrun
    every rank would start its own vLLM engine, or drive the same server, and write and load the
    same adapter files), and nucleus sampling with the sampler's log-probs as π_old (vLLM returns
    the probabilities of the nucleus it sampled from, renormalised, so the first PPO ratio would
    start below 1 on every token)."""
    if settings.rollout.rollout_engine != "vllm":
        return
    if world_size > 1:
        raise ConfigError(f"rollout_engine=vllm runs in one training process, this job has {world_size} "
                          f"(torchrun): run one process with vLLM, or rollout_engine=hf under torchrun",
                          same_on_every_rank=True)
    if settings.grpo.top_p < 1 and not settings.grpo.recompute_old_logprobs:
        raise ConfigError(f"rollout_engine=vllm with top_p={settings.grpo.top_p:g} needs "
                          "recompute_old_logprobs=true (vLLM's log-probs are those of the renormalised nucleus, "
                          "not the policy's): set it, or top_p=1")


def check_fsdp(settings: Any) -> None:
    """``fsdp`` with what it cannot serve: a vLLM rollout engine (it would need the full weights
    pushed from the shards after every update) and the frozen full copy that full fine-tuning
    keeps as the KL reference (a whole replica on every rank: the memory FSDP is there to save)."""
    if not settings.model.fsdp:
        return
    if settings.rollout.rollout_engine == "vllm":
        raise ConfigError("fsdp=true does not work with rollout_engine=vllm: use rollout_engine=hf with "
                          "--fsdp, or vLLM without it")
    if settings.grpo.beta > 0 and not settings.model.use_lora:
        raise ConfigError("fsdp=true with beta > 0 needs use_lora=true (the KL reference is then the model "
                          "with its adapter disabled); full fine-tuning would keep a whole frozen copy on "
                          "every rank: set beta=0, use_lora=true, or fsdp=false")
