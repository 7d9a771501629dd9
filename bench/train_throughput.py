"""Training-step throughput: inboxrl's ``policy_update`` vs TRL's ``GRPOTrainer``, side by side.

Both run the same single-turn GRPO workload on the same model: ``B × G`` sequences of
``prompt_len`` random prompt tokens + ``completion_len`` completion tokens (all completion tokens
trained, no padding), random group-normalised advantages, old log-probs = the model's own
log-probs (computed once, untimed), LoRA (default) or full fine-tuning, AdamW, token-mean loss
(TRL ``loss_type="dapo"``), ε = 0.2 / 0.28, β = 0, no gradient checkpointing on either side.

What is timed, per step, for both: forward + loss + backward over the whole batch, gradient-norm
clipping and ``optimizer.step()`` (+ ``zero_grad``). Generation is excluded: for TRL the prepared
inputs (``prompt_ids/mask``, ``completion_ids/mask``, ``advantages``, ``old_per_token_logps``,
``num_items_in_batch``) are built here and ``trainer._prepare_inputs`` is replaced by the identity,
so ``trainer.training_step`` (TRL's ``compute_loss`` + ``accelerator.backward``) does exactly the
update work; clipping and the optimizer step are done here with the same code as for inboxrl.
For inboxrl: ``policy_update`` as the trainer calls it (trajectories → micro-batches → loss →
backward → clip → step).

FLOPs (model FLOPs of the required work, the same number for both implementations): with
``N_dec`` the decoder's matmul parameters, ``N_head`` the LM head's, ``T`` all tokens and ``T_c``
the trained (completion) tokens, attention ``A = 2·n_layers·d_model·Σ_seq s²`` forward FLOPs
(causal: half of the 4·s²·d of QKᵀ and AV), full fine-tuning ``6·N_dec·T + 6·N_head·T_c + 3·A``;
LoRA: the frozen weights need the forward and the activation gradients but no weight gradients,
so ``4·N_dec·T + 4·N_head·T_c + 3·A + 6·N_lora·T``. MFU = FLOPs/s ÷ the matmul peak measured in
the same run (``torch.matmul`` of square matrices, same dtype and device).

Run: ``python bench/train_throughput.py [--model DIR] [--groups 2 --group-size 8 --prompt-len 128
--completion-len 128] [--full] [--steps 5]``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.grpo.optim import make_optimizer
from inboxrl.grpo.update import UpdateSettings, policy_update

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Workload:
    prompt_ids: torch.Tensor  # [N, P]
    completion_ids: torch.Tensor  # [N, C]
    advantages: torch.Tensor  # [N]
    old_logps: torch.Tensor  # [N, C]
    group_size: int


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int = 5) -> float:
    """Measured FLOP/s of ``torch.matmul`` on two ``n × n`` matrices (best of ``reps``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    _sync(device)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def load_model(path: str, dtype: torch.dtype, device: torch.device, lora: bool, lora_r: int):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.config.use_cache = False
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules=LORA_TARGETS,
                                                 lora_dropout=0.0))
    return model


def make_workload(model, vocab: int, groups: int, g: int, p: int, c: int, seed: int) -> Workload:
    gen = torch.Generator().manual_seed(seed)
    n = groups * g
    prompt = torch.randint(0, vocab, (groups, p), generator=gen).repeat_interleave(g, dim=0)
    completion = torch.randint(0, vocab, (n, c), generator=gen)
    rewards = torch.rand(groups, g, generator=gen)
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, unbiased=False, keepdim=True) + 1e-6))
    device = next(model.parameters()).device
    with torch.no_grad():
        ids = torch.cat([prompt, completion], 1).to(device)
        logits = model(input_ids=ids).logits[:, p - 1:-1].float()
        old = torch.log_softmax(logits, -1).gather(-1, ids[:, p:, None]).squeeze(-1).cpu()
    return Workload(prompt, completion, adv.flatten(), old, g)


def trajectories(w: Workload) -> list[Trajectory]:
    out = []
    for i in range(w.prompt_ids.shape[0]):
        t = Trajectory(scenario_id=str(i // w.group_size), group_id=i // w.group_size,
                       rollout_index=i % w.group_size, turns=[Turn(0, advantage=float(w.advantages[i]))])
        t.append(w.prompt_ids[i].tolist(), "user")
        t.append(w.completion_ids[i].tolist(), "model", w.old_logps[i].tolist(), turn=0)
        out.append(t)
    return out


def time_steps(step, steps: int, warmup: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each timed step (CPU time is the fairer figure on a
    shared CPU machine, where other processes stretch the wall clock)."""
    times, cpu = [], []
    for i in range(warmup + steps):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return times, cpu


def bench_inboxrl(model, w: Workload, args, device) -> list[float]:
    opt = make_optimizer(model, lr=1e-6)
    trajs = trajectories(w)
    settings = UpdateSettings(token_budget=args.token_budget, max_grad_norm=1.0)
    return time_steps(lambda: policy_update(model, opt, None, trajs, settings, pad_id=0), args.steps, args.warmup, device)


def build_trl(model, tokenizer, w: Workload, args, device, out_dir: str):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    n = w.prompt_ids.shape[0]
    cfg = GRPOConfig(output_dir=out_dir, per_device_train_batch_size=n, num_generations=w.group_size,
                     max_completion_length=w.completion_ids.shape[1], loss_type="dapo", beta=0.0, epsilon=0.2,
                     epsilon_high=0.28, gradient_checkpointing=False, bf16=device.type == "cuda" and args.bf16,
                     use_cpu=device.type != "cuda", report_to="none", learning_rate=1e-6,
                     gradient_accumulation_steps=1, steps_per_generation=1, logging_steps=1_000_000)
    data = Dataset.from_dict({"prompt": ["hello"] * n})
    trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                          args=cfg, train_dataset=data, processing_class=tokenizer)
    inputs = {
        "prompt_ids": w.prompt_ids.to(device), "prompt_mask": torch.ones_like(w.prompt_ids).to(device),
        "completion_ids": w.completion_ids.to(device), "completion_mask": torch.ones_like(w.completion_ids).to(device),
        "advantages": w.advantages.to(device), "old_per_token_logps": w.old_logps.to(device),
        "num_items_in_batch": torch.tensor(float(w.completion_ids.numel()), device=device),
    }
    trainer._prepare_inputs = lambda batch: batch  # generation excluded: hand over the prepared batch
    trainer.current_gradient_accumulation_steps = 1  # normally set by Trainer._inner_training_loop
    return trainer, inputs


def bench_trl(model, tokenizer, w: Workload, args, device) -> list[float]:
    with tempfile.TemporaryDirectory() as out_dir:
        trainer, inputs = build_trl(model, tokenizer, w, args, device, out_dir)
        tmodel = trainer.model
        opt = make_optimizer(tmodel, lr=1e-6)
        params = [p for p in tmodel.parameters() if p.requires_grad]

        def step():
            opt.zero_grad(set_to_none=True)
            trainer.training_step(tmodel, dict(inputs), inputs["num_items_in_batch"])
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        return time_steps(step, args.steps, args.warmup, device)


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.float().flatten() for p in model.parameters() if p.requires_grad])


def check_same_gradients(model, tokenizer, w: Workload, args, device) -> dict:
    """Both implementations on identical copies: the same loss gradient (untimed sanity check)."""
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    opt = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.0)
    policy_update(ours, opt, None, trajectories(w), UpdateSettings(token_budget=args.token_budget, max_grad_norm=0),
                  pad_id=0)
    with tempfile.TemporaryDirectory() as out_dir:
        trainer, inputs = build_trl(theirs, tokenizer, w, args, device, out_dir)
        trainer.training_step(trainer.model, dict(inputs), inputs["num_items_in_batch"])
        g_ours, g_trl = _grads(ours), _grads(trainer.model)
    rel = float((g_ours - g_trl).norm() / g_trl.norm().clamp(min=1e-30))
    print(f"gradient check: |g_inboxrl - g_trl| / |g_trl| = {rel:.2e} (|g| = {float(g_trl.norm()):.3e})")
    del ours, theirs, trainer
    return {"relative_difference": rel, "grad_norm": float(g_trl.norm())}


def model_flops(model, w: Workload, lora: bool) -> tuple[float, str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    n_head = head.weight.numel()
    n_dec = sum(m.weight.numel() for name, m in base.get_decoder().named_modules()
                if isinstance(m, torch.nn.Linear) and "lora_" not in name)
    n_lora = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    n, p = w.prompt_ids.shape
    c = w.completion_ids.shape[1]
    t_all, t_c = n * (p + c), n * c
    cfg = base.config
    attn = 2 * cfg.num_hidden_layers * cfg.hidden_size * n * (p + c) ** 2
    if lora:
        flops = 4 * n_dec * t_all + 4 * n_head * t_c + 3 * attn + 6 * n_lora * t_all
        formula = "4·N_dec·T + 4·N_head·T_c + 3·A + 6·N_lora·T"
    else:
        flops = 6 * n_dec * t_all + 6 * n_head * t_c + 3 * attn
        formula = "6·N_dec·T + 6·N_head·T_c + 3·A"
    return float(flops), f"{formula} (N_dec={n_dec:,}, N_head={n_head:,}, N_lora={n_lora:,}, T={t_all}, T_c={t_c})"


def default_model_path() -> str:
    try:
        from inboxrl.policy.default_model import default_model_dir
    except ImportError:
        from inboxrl.policy.default_model import default_model_dir
    return str(default_model_dir())


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the embedded SmolLM2-135M)")
    ap.add_argument("--groups", type=int, default=None, help="B scenarios (default 4 on GPU, 1 on CPU)")
    ap.add_argument("--group-size", type=int, default=None, help="G rollouts per group (default 8 on GPU, 4 on CPU)")
    ap.add_argument("--prompt-len", type=int, default=None, help="default 256 on GPU, 64 on CPU")
    ap.add_argument("--completion-len", type=int, default=None, help="default 256 on GPU, 64 on CPU")
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--token-budget", type=int, default=None, help="inboxrl micro-batch budget (default: whole batch)")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 on GPU (CPU always uses fp32)")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and args.bf16 else torch.float32
    gpu_defaults, cpu_defaults = (4, 8, 256, 256), (1, 4, 64, 64)
    d = gpu_defaults if cuda else cpu_defaults
    groups, g = args.groups or d[0], args.group_size or d[1]
    p, c = args.prompt_len or d[2], args.completion_len or d[3]
    args.token_budget = args.token_budget or groups * g * (p + c)
    path = args.model or default_model_path()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    ours = load_model(path, dtype, device, not args.full, args.lora_r)
    w = make_workload(ours, ours.config.vocab_size, groups, g, p, c, seed=0)
    tokens = w.prompt_ids.numel() + w.completion_ids.numel()
    flops, formula = model_flops(ours, w, lora=not args.full)
    peak = matmul_peak(device, dtype, 8192 if cuda else 2048)
    print(f"device={device} ({torch.cuda.get_device_name() if cuda else os.cpu_count()} "
          f"{'GPU' if cuda else 'CPU threads=' + str(torch.get_num_threads())}) dtype={dtype} model={path}")
    print(f"workload: {groups}x{g} sequences, prompt {p} + completion {c} tokens = {tokens} tokens/step, "
          f"{'full FT' if args.full else f'LoRA r={args.lora_r}'}; model FLOPs/step = {flops:.3e}: {formula}")
    print(f"measured matmul peak ({dtype}): {peak / 1e12:.2f} TFLOP/s")
    results = {"device": str(device), "dtype": str(dtype), "tokens_per_step": tokens, "flops_per_step": flops,
               "matmul_peak_flops": peak, "workload": [groups, g, p, c], "lora": not args.full}
    if not args.skip_trl:
        results["grad_check"] = check_same_gradients(ours, tokenizer, w, args, device)
    runs = [("inboxrl", lambda: bench_inboxrl(ours, w, args, device))]
    if not args.skip_trl:
        trl_model = copy.deepcopy(ours)  # identical weights (and LoRA init) on both sides
        runs.append(("trl", lambda: bench_trl(trl_model, tokenizer, w, args, device)))
    for name, fn in runs:
        try:
            times, cpu = fn()
        except Exception as exc:  # report exactly why one side could not run
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        med = _median(times)
        results[name] = {"step_s": times, "cpu_s": cpu, "median_s": med, "tokens_per_s": tokens / med,
                         "flops_per_s": flops / med, "mfu": flops / med / peak}
        print(f"{name:8s} step {med * 1e3:9.1f} ms (median of {len(times)})  {tokens / med:10.0f} tokens/s  "
              f"{flops / med / 1e12:7.3f} TFLOP/s  = {100 * flops / med / peak:5.1f}% of measured peak"
              + ("" if cuda else f"  (process CPU time {_median(cpu):.2f} s/step)"))
    if "tokens_per_s" in results.get("inboxrl", {}) and "tokens_per_s" in results.get("trl", {}):
        ratio = results["inboxrl"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
        results["speedup_vs_trl"] = ratio
        print(f"speed-up inboxrl / TRL: {ratio:.2f}x (target >= 1.5)")
        if not cuda:
            cpu_ratio = _median(results["trl"]["cpu_s"]) / _median(results["inboxrl"]["cpu_s"])
            results["cpu_time_ratio_vs_trl"] = cpu_ratio
            print(f"CPU-time ratio TRL / inboxrl: {cpu_ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
