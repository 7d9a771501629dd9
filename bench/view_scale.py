"""How long ``inboxrl view`` takes on a run of real size: fabricate one, build it, refresh it.

Fabricates ``--steps`` training steps of ``--groups`` x ``--group-size`` rollouts (default 300 x
8 x 8 = 64 rollouts a step) laid out like the rollout engine's trajectories: the real SmolLM2
tokenizer's ids for a system prompt, a question, ``--turns`` model turns (tool calls) of up to
96 sampled tokens each with their log-probs, and tool results; outcome and process rewards
drawn at random and advantages assigned by the project's own ``assign_advantages`` (masked
mode, so some groups are filtered). Plus metrics.jsonl, config.json and an eval every 25 steps.

Then it times, side by side in this one process: the cold build (all pages), a refresh with
nothing changed, and a refresh after one more step is written (what reloading a live run costs).

    python bench/view_scale.py                   # 300 steps x 64 rollouts, in a temp dir
    python bench/view_scale.py --steps 20 --keep /tmp/run   # smaller, keep the run

``--distinct N`` (default 20) fabricates N different steps and copies them for the others.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from inboxrl.agent.trajectory import ToolCall, Trajectory, Turn, save_jsonl
from inboxrl.email.rubric import PROCESS_REWARDS, Rubric
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.logs.eval_stats import eval_statistics, save_baseline, save_eval
from inboxrl.policy.tiny import default_tokenizer
from inboxrl.view.build import ViewSettings, build_view

SYSTEM = ("You are an email research assistant. You answer questions about the user's inbox with tools. "
          "Each turn, reply with exactly one JSON object and nothing else. ") * 36  # ~900 tokens
WORDS = ("budget review meeting contract gas pipeline delivery invoice Houston schedule approval "
         "trading desk counterparty volume price forecast quarterly legal draft signed Tuesday").split()


QUESTIONS = ("Question: When is the quarterly budget review meeting?", "Question: What volume of gas was "
             "agreed with Kestrel Power for January?", "Question: Who signed the Copperline SCADA purchase order?",
             "Question: Which desk handles the Houston pipeline trades?", "Question: What is the not-to-exceed "
             "amount of the Pasadena upgrade?", "Question: When was the legal draft of the ISDA sent?")


class Texts:
    """Token ids of text pieces (tokenised once and cached)."""

    def __init__(self, tokenizer):
        self.tok, self.cache = tokenizer, {}

    def ids(self, text: str) -> list[int]:
        if text not in self.cache:
            self.cache[text] = self.tok.encode(text, add_special_tokens=False)
        return self.cache[text]


def _call(rng: random.Random, i: int, last: bool) -> ToolCall:
    if last:
        return ToolCall("return_final_answer", {"answer": f"{rng.choice(WORDS)} {rng.randint(1, 28)}",
                                                "sources": ["<m1@enron.com>"]})
    if i % 2 == 0:
        return ToolCall("search_emails", {"keywords": rng.sample(WORDS, 2)})
    return ToolCall("read_email", {"message_id": f"<m{rng.randint(1, 40)}@enron.com>"})


def _result(rng: random.Random, call: ToolCall) -> str:
    if call.name == "search_emails":
        return json.dumps([{"message_id": f"<m{k}@enron.com>", "subject": " ".join(rng.sample(WORDS, 4)),
                            "from": "jane.doe@enron.com", "snippet": " ".join(rng.sample(WORDS, 12))}
                           for k in range(rng.randint(0, 5))])
    if call.name == "read_email":
        return json.dumps({"message_id": call.arguments["message_id"], "subject": " ".join(rng.sample(WORDS, 4)),
                           "body": " ".join(rng.choice(WORDS) for _ in range(400))})
    return ""


def fabricate_trajectory(rng: random.Random, texts: Texts, gid: int, r: int, turns: int) -> Trajectory:
    t = Trajectory(scenario_id=f"scn-{gid:03d}", group_id=gid, rollout_index=r)
    t.messages = [{"role": "user", "content": QUESTIONS[gid % len(QUESTIONS)]}]
    t.append(texts.ids(SYSTEM), "system")
    t.append(texts.ids(t.messages[0]["content"]), "user")
    n_turns = rng.randint(2, turns)
    for i in range(n_turns):
        call = _call(rng, i, i == n_turns - 1)
        text = json.dumps(call.to_dict())
        ids = texts.ids(text)[:96]
        t.append(ids, "model", [-rng.expovariate(3.0) for _ in ids], turn=i)
        t.append(texts.ids("<|im_end|>\n"), "template")
        result = _result(rng, call)
        events = [] if gid % 4 == 3 else rng.sample(sorted(PROCESS_REWARDS), rng.randint(0, 2))
        t.turns.append(Turn(index=i, text=text, tool_call=call, tool_result=result or None, events=events,
                            num_tokens=len(ids), process_reward=sum(PROCESS_REWARDS[e] for e in events)))
        if result:
            t.append(rng.sample(range(300, 40000), min(900, len(result) // 4)), "tool")  # ~4 chars a token
    # a quarter of the groups fail alike (no variance: GRPO filters them)
    t.reward = 0.0 if gid % 4 == 3 else rng.choice([-2.0, -1.0, 0.0, 0.1, 0.2, 1.1, 1.3])
    t.rubric = Rubric(attempted_answer=True, answer_correct=t.reward > 1, final_answer=t.turns[-1].tool_call.arguments.get("answer"))
    t.finish_reason = "answered"
    return t


def fabricate_run(root: Path, steps: int, groups: int, group_size: int, turns: int = 4, seed: int = 0,
                  eval_every: int = 25, eval_size: int = 32, distinct: int = 0) -> Path:
    """Write a run of that size under ``root`` (see the module docstring). ``distinct`` > 0
    fabricates that many step files and copies them for the other steps (the viewer does the
    same work on a copy; fabricating is slower than viewing)."""
    rng = random.Random(seed)
    tok = default_tokenizer()
    texts = Texts(tok)
    tok.save_pretrained(root / "tokenizer")
    (root / "config.json").write_text(json.dumps({"model_name": str(root / "tokenizer"), "max_steps": steps,
                                                  "num_generations": group_size, "mode": "masked",
                                                  "min_group_std": 0.05}, indent=2))
    with open(root / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            if distinct and step > distinct:
                src = root / "trajectories" / f"step_{(step - 1) % distinct + 1:04d}.jsonl"
                shutil.copyfile(src, root / "trajectories" / f"step_{step:04d}.jsonl")
                row = json.loads(lines[(step - 1) % distinct])
                f.write(json.dumps(dict(row, step=step)) + "\n")
            else:
                write_step(root, step, rng, texts, groups, group_size, turns, f)
                f.flush()
                lines = (root / "metrics.jsonl").read_text().splitlines()
            if step % eval_every == 0 or step == 1:
                write_eval(root, 0 if step == 1 else step, rng, texts, eval_size, turns)
    return root


def write_step(root: Path, step: int, rng: random.Random, texts: Texts, groups: int, group_size: int,
               turns: int, metrics) -> None:
    trajs = [fabricate_trajectory(rng, texts, g, r, turns) for g in range(groups) for r in range(group_size)]
    adv = assign_advantages(trajs, mode="masked", process_weight=0.5, min_group_std=0.05)
    save_jsonl(trajs, root / "trajectories" / f"step_{step:04d}.jsonl")
    row = {"kind": "train", "step": step, "avg_reward": sum(t.reward for t in trajs) / len(trajs),
           "groups_kept": adv.groups_kept, "groups_filtered": adv.groups_filtered,
           "total_tokens": sum(t.num_tokens for t in trajs), "grad_norm": rng.random(), "loss": 0.01 * rng.random(),
           "rollout_time": 30 + 5 * rng.random(), "training_time": 10 + 2 * rng.random()}
    metrics.write(json.dumps(row) + "\n")


def write_eval(root: Path, step: int, rng: random.Random, texts: Texts, size: int, turns: int) -> None:
    trajs = [fabricate_trajectory(rng, texts, i, 0, turns) for i in range(size)]
    base = json.loads((root / "eval_logs" / "baseline_eval.json").read_text())["scenario_rewards"] if step else None
    stats = eval_statistics(trajs, step=step, eval_time=60.0, baseline_rewards=base)
    path = save_eval(root, stats)
    save_jsonl(trajs, path.with_name(f"eval_step_{step:04d}_trajectories.jsonl"))
    if step == 0:
        save_baseline(root, stats)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the build's worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_build(root: Path, settings: ViewSettings):
    cpu = _cpu_seconds()
    report = build_view(root, settings)
    return report, _cpu_seconds() - cpu


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--eval-size", type=int, default=32, help="scenarios per eval (an eval every 25 steps)")
    ap.add_argument("--distinct", type=int, default=20, help="fabricate this many steps, copy them for the rest")
    ap.add_argument("--workers", type=int, default=0, help="build processes (0 = one per CPU)")
    ap.add_argument("--keep", default=None, help="write the run here and keep it")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="view_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.time()
        fabricate_run(root, args.steps, args.groups, args.group_size, args.turns, distinct=args.distinct,
                      eval_size=args.eval_size)
        print(f"fabricated {args.steps} steps x {args.groups * args.group_size} rollouts "
              f"({_size_mb(root):.0f} MB) in {time.time() - t0:.1f}s")
        settings = ViewSettings(workers=args.workers)
        load = os.getloadavg()[0]
        cold, cpu = timed_build(root, settings)
        print(f"cold build: {cold.seconds:.1f}s wall, {cpu:.1f} CPU-s over {os.cpu_count()} CPUs "
              f"(load average {load:.1f} before) ({cold.steps} step pages, {cold.rollouts} rollouts, "
              f"{_size_mb(root / 'view'):.0f} MB written, {len(cold.notes)} notes)")
        same, cpu_same = timed_build(root, settings)
        print(f"refresh, nothing new: {same.seconds:.2f}s wall, {cpu_same:.1f} CPU-s ({same.reused} steps/evals reused)")
        with open(root / "metrics.jsonl", "a") as f:
            write_step(root, args.steps + 1, random.Random(1), Texts(default_tokenizer()), args.groups,
                       args.group_size, args.turns, f)
        more, cpu_more = timed_build(root, settings)
        print(f"refresh after one more step: {more.seconds:.2f}s wall, {cpu_more:.1f} CPU-s "
              f"({more.rollouts} rollouts built)")
        print(f"ratios (wall): cold / refresh-one-step = {cold.seconds / max(more.seconds, 1e-9):.1f}x, "
              f"cold / refresh-nothing = {cold.seconds / max(same.seconds, 1e-9):.1f}x; "
              f"cold build CPU-s / wall-s = {cpu / max(cold.seconds, 1e-9):.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
