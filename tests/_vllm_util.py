"""Fakes shaped like vLLM's objects, for the vLLM engine's tests without vLLM: ``Logprob``,
``CompletionOutput``, ``RequestOutput``, a scripted ``LLM`` and a ``vllm`` module
(``SamplingParams``, ``inputs.TokensPrompt``, ``lora.request.LoRARequest``), plus a
:class:`ColocatedBackend` around a fake ``LLM``."""
from __future__ import annotations

import importlib.machinery
import sys
import types
from dataclasses import dataclass

from inboxrl.agent.vllm_backends import ColocatedBackend


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput (the fields used)
    index: int
    text: str
    token_ids: tuple
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = "stop"


class RequestOutput:  # vllm.outputs.RequestOutput (the fields used)
    def __init__(self, prompt_token_ids, outputs):
        self.prompt_token_ids, self.outputs, self.finished = prompt_token_ids, outputs, True


class FakeLLM:
    """``vllm.LLM``'s surface: ``generate(prompts, params, use_tqdm, lora_request)`` answers each
    prompt with the next scripted turn of the question it contains (the one that occurs last in
    the prompt, after any few-shot example; the turn is the number of tool results after it); ``apply_model`` / ``reset_prefix_cache`` / ``sleep`` /
    ``wake_up`` are recorded in ``events``."""

    def __init__(self, tok, scripts):
        self.tok, self.scripts, self.calls, self.events, self.weights = tok, scripts, [], [], None

    def generate(self, prompts, params, use_tqdm=True, lora_request=None):
        self.calls.append((prompts, params, lora_request))
        self.events.append("generate")
        outs = []
        for prompt, p in zip(prompts, params):
            text = self.tok.decode(prompt["prompt_token_ids"])
            question = max((q for q in self.scripts if q in text), key=text.rfind)
            turn = text[text.rfind(question):].count("<|im_start|>tool")
            reply = self.scripts[question][turn]
            ids = self.tok.encode(reply, add_special_tokens=False)[: p["max_tokens"]]
            lps = [-0.01 * (i + 1) for i in range(len(ids))]
            outs.append(RequestOutput(prompt["prompt_token_ids"], [CompletionOutput(
                0, reply, tuple(ids), sum(lps), [{t: Logprob(lp, 1)} for t, lp in zip(ids, lps)])]))
        return outs

    def apply_model(self, fn):
        llm = self

        class Model:
            def load_weights(self, weights):
                llm.weights = list(weights)
                llm.events.append("load_weights")

        return [fn(Model())]

    def reset_prefix_cache(self):
        self.events.append("reset_prefix_cache")

    def sleep(self, level=1):
        self.events.append(f"sleep({level})")

    def wake_up(self):
        self.events.append("wake_up")


def install_fake_vllm(monkeypatch) -> types.ModuleType:
    """Put a ``vllm`` module with ``SamplingParams`` (a dict), ``inputs.TokensPrompt`` and
    ``lora.request.LoRARequest`` in ``sys.modules`` (with a spec, so ``importlib.util.find_spec``
    finds it as an installed vLLM)."""
    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    vllm.SamplingParams = lambda **kw: dict(kw)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, int_id, path: ("lora", name, int_id, path)
    for name, mod in {"vllm": vllm, "vllm.inputs": inputs, "vllm.lora": lora, "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return vllm


def colocated(llm, can_sleep: bool = False) -> ColocatedBackend:
    """A :class:`ColocatedBackend` whose ``vllm.LLM`` is ``llm`` (no vLLM here: the fake stands in)."""
    backend = ColocatedBackend.__new__(ColocatedBackend)
    backend.llm, backend.lora_request, backend.asleep, backend.can_sleep = llm, None, False, can_sleep
    return backend
