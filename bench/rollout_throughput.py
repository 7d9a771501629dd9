"""Rollout throughput: the engine vs a plain cached decode of the same batch and context (the
anchor) vs a naive loop, side by side in one run.

The plain decode is what the hardware does for this model and batch with no agent around it:
one forward of ``batch`` identical-length rows, then ``batch`` tokens per transformers forward
with a ``DynamicCache`` and no mask; measured before the engine (context 600) and after it (at
the engine's mean decoding context: the context every generated token was sampled at,
averaged), the anchor being their geometric mean (the load of a shared machine drifts). The
engine's figure includes everything else a rollout costs (prompt and tool-result prefill,
sampling, tools, the batch draining at the end). The naive loop runs one rollout at a time and, every turn, re-renders and re-tokenises the whole
conversation and calls ``model.generate`` once (same sampling settings, same stop rule, same
environment). Both use the default model (SmolLM2-135M-Instruct, via ``default_model_dir``)
and synthetic scenarios from the embedded default dataset.

    .venv/bin/python bench/rollout_throughput.py [--rollouts 16] [--batch-size N] [--max-turns 4]
        [--max-new-tokens 128] [--dtype auto] [--threads N] [--skip-naive] [--mismatch] [--profile]

Prints generated tokens/s of each, ``ratio engine/plain = X.XX``, ``ratio engine/naive = X.XX``,
turns, finish reasons and peak RSS; ``--profile``: the engine's top ops (torch.profiler;
the profiler's overhead is in that run's times); ``--mismatch``: the sampler/trainer mismatch of the engine's
tokens against one trainer forward.
"""
from __future__ import annotations

import argparse
import math
import resource
import time
from collections import Counter

import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def naive_rollouts(model, tok, renderer, scenarios, env_factory, settings):
    """One ``generate`` call per rollout per turn, re-tokenising the whole conversation."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    from inboxrl.agent.episode import Episode

    class CallComplete(StoppingCriteria):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores, **kw):
            text = renderer.decode(input_ids[0, self.start:].tolist())
            return torch.tensor([renderer.call_complete(text)], device=input_ids.device)

    generated, trajs = 0, []
    for i, sc in enumerate(scenarios):
        ep = Episode(sc, i, 0, env_factory, settings.max_turns)
        messages = renderer.prompt_messages(sc)
        gen = torch.Generator().manual_seed(settings.seed + i)
        while not ep.done:
            ids = tok(renderer.render(messages, add_generation_prompt=True), add_special_tokens=False,
                      return_tensors="pt").input_ids
            if ids.shape[1] + 1 > settings.max_context_tokens:
                ep.finish("context_overflow")
                break
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with torch.inference_mode():
                out = model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True,
                    temperature=settings.temperature, top_p=1.0, top_k=0,
                    max_new_tokens=min(settings.max_new_tokens, settings.max_context_tokens - ids.shape[1]),
                    eos_token_id=renderer.stop_token_ids, pad_token_id=tok.pad_token_id,
                    stopping_criteria=StoppingCriteriaList([CallComplete(ids.shape[1])]))
            new = out[0, ids.shape[1]:].tolist()
            generated += len(new)
            if new and new[-1] in renderer.stop_token_ids:
                new = new[:-1]
            text = renderer.decode(new)
            messages.append({"role": "assistant", "content": text})
            obs = ep.take_turn(text, num_tokens=len(new))
            if obs is not None:
                messages.append({"role": "tool", "content": obs})
        trajs.append(ep.traj)
    return trajs, generated


def decode_context(trajs) -> float:
    """Mean context length at which the generated tokens were sampled."""
    positions = [i for t in trajs for i, s in enumerate(t.sources) if s == "model"]
    return sum(positions) / max(len(positions), 1)


def plain_decode(model, trajs, batch: int, context: int, steps: int = 32) -> float:
    """Tokens/s of a plain cached decode: ``batch`` rows at ``context`` (the trajectories' tokens,
    or a fixed id run when none yet), ``steps`` greedy tokens."""
    from transformers import DynamicCache

    ids = [i for t in trajs for i in t.token_ids][:context] if trajs else []
    ids = ids or list(range(1000, 1000 + context))
    ids = torch.tensor((ids * (context // len(ids) + 1))[:context])
    rows = ids[None, :].repeat(batch, 1)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=rows, cache=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        start = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        return batch * steps / (time.perf_counter() - start)


def mismatch_line(model, trajs) -> str:
    """Sampler (the engine, cached decode) vs trainer (a full forward of the same tokens)."""
    from inboxrl.grpo.mismatch import measure_mismatch

    st, gaps = measure_mismatch(model, trajs)
    ratio = torch.exp(-gaps)  # pi_trainer / pi_sampler per token
    outside = float(((ratio < 0.8) | (ratio > 1.28)).double().mean()) if len(gaps) else 0.0
    return (f"mismatch (engine sampler vs trainer forward, {st.tokens} tokens): mismatch_kl={st.mismatch_kl:.5f} "
            f"probs_corr={st.probs_corr:.5f} max_logprob_gap={st.max_logprob_gap:.4f} "
            f"mean|gap|={float(gaps.abs().mean()):.4f} ratios outside [0.8, 1.28]: {100 * outside:.2f}%")


def summary(trajs) -> str:
    reasons = Counter(t.finish_reason for t in trajs)
    turns = sum(len(t.turns) for t in trajs)
    valid = sum(1 for t in trajs for x in t.turns if x.tool_call is not None)
    return f"turns={turns} valid_calls={valid} finish={dict(reasons)}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rollouts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=0, help="engine batch size (0: all rollouts)")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-context-tokens", type=int, default=4096)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="run the engine under torch.profiler and print the ops that cost most")
    ap.add_argument("--mismatch", action="store_true",
                    help="also score the engine's tokens with one trainer forward: sampler/trainer mismatch")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 avoids thread thrashing on a shared, loaded machine)")
    return ap.parse_args()


def build_workload(args: argparse.Namespace):
    """The default model, the first ``--rollouts`` training scenarios and the engine's settings."""
    from inboxrl.agent.chat import ChatRenderer
    from inboxrl.agent.rollout import RolloutSettings
    from inboxrl.email.env import EmailTaskEnv
    from inboxrl.email.judge import make_judge
    from inboxrl.email.scenarios import load_scenarios
    from inboxrl.email.store import EmailStore
    from inboxrl.synth.data import ensure_default_dataset
    from inboxrl.policy.default_model import default_model_dir
    from inboxrl.policy.hf import HFPolicy
    from inboxrl.policy.loading import load_model

    data = ensure_default_dataset()
    scenarios = load_scenarios(data.scenarios_path, split="train")[: args.rollouts]
    store, judge = EmailStore(data.db_path), make_judge("normalized")

    def env_factory(sc):
        return EmailTaskEnv(store, sc, judge, args.max_turns)

    model, tok = load_model(default_model_dir(), dtype=args.dtype, device="cpu")
    renderer = ChatRenderer(tok)
    policy = HFPolicy(model, tok, renderer=renderer)
    settings = RolloutSettings(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                               max_context_tokens=args.max_context_tokens, seed=args.seed,
                               progress=False, batch_size=args.batch_size or None)
    return model, tok, renderer, policy, scenarios, env_factory, settings


def timed_engine(policy, reqs, env_factory, settings, profile: bool):
    """The rollout engine over ``reqs``: (trajectories, seconds), optionally under torch.profiler."""
    from inboxrl.agent.rollout import run_rollouts

    start = time.perf_counter()
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            trajs = run_rollouts(policy, reqs, env_factory, settings)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    else:
        trajs = run_rollouts(policy, reqs, env_factory, settings)
    return trajs, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from inboxrl.agent.rollout import RolloutRequest

    model, tok, renderer, policy, scenarios, env_factory, settings = build_workload(args)
    dtype = next(model.parameters()).dtype
    print(f"model=SmolLM2-135M-Instruct dtype={dtype} device=cpu threads={torch.get_num_threads()} "
          f"rollouts={len(scenarios)} batch={args.batch_size or len(scenarios)} max_turns={args.max_turns} max_new_tokens={args.max_new_tokens}")

    reqs = [RolloutRequest(sc, i, 0) for i, sc in enumerate(scenarios)]
    batch = min(args.batch_size or len(scenarios), len(scenarios))
    plain_before = plain_decode(model, None, batch, 600)
    trajs, engine_s = timed_engine(policy, reqs, env_factory, settings, args.profile)
    engine_tokens = sum(t.num_model_tokens for t in trajs)
    engine_tps = engine_tokens / engine_s
    print(f"engine: {engine_tokens} tokens in {engine_s:.1f}s = {engine_tps:.1f} tok/s; "
          f"{summary(trajs)}; peak RSS {peak_rss_mb():.0f} MB")
    context = round(decode_context(trajs))
    plain_after = plain_decode(model, trajs, batch, context)
    plain_tps = math.sqrt(plain_before * plain_after)
    print(f"plain:  cached decode of {batch} rows: {plain_before:.1f} tok/s at context 600 before the engine, "
          f"{plain_after:.1f} tok/s at the engine's mean decoding context {context} after it; "
          f"geometric mean {plain_tps:.1f} tok/s")
    print(f"ratio engine/plain = {engine_tps / plain_tps:.2f}")
    if args.mismatch:
        print(mismatch_line(model, trajs))
    if args.skip_naive:
        return
    start = time.perf_counter()
    naive, naive_tokens = naive_rollouts(model, tok, renderer, scenarios, env_factory, settings)
    naive_s = time.perf_counter() - start
    naive_tps = naive_tokens / naive_s
    print(f"naive:  {naive_tokens} tokens in {naive_s:.1f}s = {naive_tps:.1f} tok/s; "
          f"{summary(naive)}; peak RSS {peak_rss_mb():.0f} MB")
    print(f"ratio engine/naive = {engine_tps / naive_tps:.2f}")


if __name__ == "__main__":
    main()
