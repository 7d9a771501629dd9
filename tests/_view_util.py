"""Shared builders for the run-viewer tests: a hand-made run with known advantages, an HTML
table reader, and headless Chromium."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from inboxrl.agent.trajectory import ToolCall, Trajectory, Turn, save_jsonl
from inboxrl.email.rubric import Rubric

SCRIPT_BODY = 'Hi,\n<script>document.title="pwned"</script>\nThe budget review is Tuesday.'

# group 0 is kept (3 rollouts, 1-3 turns), group 1 was filtered (its advantages are 0)
ADVANTAGES = {0: [[0.5, -0.25, 1.75], [-1.125], [0.0625, -0.875]], 1: [[0.0, 0.0], [0.0]]}
REWARDS = {0: [1.2, -1.0, 0.1], 1: [0.0, 0.0]}


def _trajectory(step: int, group: int, r: int, advs: list[float], reward: float, kept: bool) -> Trajectory:
    t = Trajectory(scenario_id=f"scn-{group}", group_id=group, rollout_index=r, reward=reward,
                   finish_reason="answered" if reward > 0 else "max_turns", kept=kept,
                   rubric=Rubric(answer_correct=reward > 0.5, attempted_answer=reward != 0.0,
                                 final_answer="Tuesday" if reward > 0 else None))
    t.messages = [{"role": "system", "content": "sys"},
                  {"role": "user", "content": f"Question: when is review {group}? <b>not bold</b>"}]
    t.append([1, 2, 3], "system")
    t.append([4, 5], "user")
    for i, a in enumerate(advs):
        n = 2 + (i + r) % 2
        t.append([10 + i] * n, "model", [-0.5 - 0.1 * k for k in range(n)], turn=i)
        body = SCRIPT_BODY if (group, r, i) == (0, 0, 0) else f"result {i}"
        result = json.dumps({"message_id": "<m1@x>", "body": body})
        call = ToolCall("read_email", {"message_id": "<m1@x>"}) if i % 2 == 0 else None
        t.turns.append(Turn(index=i, text=f"turn {i} text <i>raw</i>", tool_call=call,
                            parse_error=None if call else "unparseable: no JSON object found",
                            tool_result=result, events=["read_reference"] if call else ["format_error"],
                            num_tokens=n, process_reward=1.0 if call else -1.0, advantage=a))
        t.append([7, 8], "tool")
    return t


def step_trajectories(step: int) -> list[Trajectory]:
    return [_trajectory(step, g, r, advs, REWARDS[g][r], kept=(g == 0))
            for g, rows in ADVANTAGES.items() for r, advs in enumerate(rows)]


def _eval_traj(sid: str, reward: float) -> Trajectory:
    t = Trajectory(scenario_id=sid, group_id=0, rollout_index=0, reward=reward, finish_reason="answered")
    t.append([1, 2], "system")
    t.append([3], "model", [-0.3], turn=0)
    t.turns.append(Turn(index=0, text="answer", tool_call=ToolCall("return_final_answer", {"answer": "x"}),
                        num_tokens=1))
    return t


EVAL_REWARDS = {0: {"a": 0.0, "b": 0.5, "c": -1.0}, 2: {"a": 1.0, "b": 0.5, "c": -2.0}}  # a won, b tie, c lost


def _eval_stats(step: int, rewards: dict[str, float]) -> dict:
    n = len(rewards)
    return {"step": step, "accuracy": 0.5, "correct_answers": 1, "total_samples": n, "judged_samples": n,
            "attempted_answer": 1.0, "num_attempted": n, "avg_reward": sum(rewards.values()) / n,
            "median_reward": 0.0, "std_reward": 0.1, "min_reward": -2.0, "max_reward": 1.0,
            "found_correct_email": 0.5, "num_found": 1, "read_correct_email": 0.25, "num_read": 1,
            "total_repeated_searches": 1, "total_unique_searches": 3, "total_searches": 4,
            "avg_turns_correct": 2.0, "avg_turns_idk": None, "avg_search_attempts": 1.3, "num_idk": 0,
            "finished_early": n, "judge_errors": 0, "eval_time": 1.5, "valid_call_rate": 0.9,
            "first_search_rate": 1.0, "beat_rate": 1 / 3 if step else None, "tie_rate": 1 / 3 if step else None,
            "loss_rate": 1 / 3 if step else None, "baseline_compared": n if step else 0,
            "per_scenario": [{"scenario_id": s, "rollout_index": 0, "reward": r, "correct": r > 0.5,
                              "answer": "x", "num_turns": 1, "finish_reason": "answered", "judge_error": None}
                             for s, r in sorted(rewards.items())]}


def make_handmade_run(root: Path, truncate: bool = True) -> Path:
    """A run with two steps (step 2's file and metrics.jsonl end in a truncated line), evals at
    steps 0 and 2 with their transcripts, and a baseline."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"mode": "masked", "learning_rate": 1e-5, "min_group_std": 0.05,
                                                  "model_name": "", "num_generations": 3}))
    rows = [{"kind": "train", "step": s, "avg_reward": 0.1 * s, "accuracy": 0.25, "groups_kept": 1,
             "groups_filtered": 1, "num_early_exit": 2, "total_tokens": 100, "trainable_tokens": 20,
             "grad_norm": 0.5, "rollout_time": 2.0, "training_time": 1.0, "loss": 0.01} for s in (1, 2)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (root / "metrics.jsonl").write_text(text + ('{"kind": "train", "step": 3, "avg_re' if truncate else ""))
    for step in (1, 2):
        path = root / "trajectories" / f"step_{step:04d}.jsonl"
        save_jsonl(step_trajectories(step), path)
        if truncate and step == 2:
            with open(path, "a", encoding="utf-8") as f:
                f.write('{"scenario_id": "scn-9", "token_ids": [1, 2')
    logs = root / "eval_logs"
    for step, rewards in EVAL_REWARDS.items():
        (logs / f"eval_step_{step:04d}.json").parent.mkdir(parents=True, exist_ok=True)
        (logs / f"eval_step_{step:04d}.json").write_text(json.dumps(_eval_stats(step, rewards)))
        save_jsonl([_eval_traj(s, r) for s, r in rewards.items()], logs / f"eval_step_{step:04d}_trajectories.jsonl")
    base = dict(_eval_stats(0, EVAL_REWARDS[0]), scenario_rewards=EVAL_REWARDS[0])
    (logs / "baseline_eval.json").write_text(json.dumps(base))
    return root


class Tables(HTMLParser):
    """Collects elements with their attributes and text: ``cells`` are (attrs, text) of each
    ``td`` with ``data-adv``, per heat-map table (``data-group``)."""

    def __init__(self) -> None:
        super().__init__()
        self.heat: dict[int, list[list[tuple[dict, str]]]] = {}
        self.counts: dict[str, int] = {}
        self._group: int | None = None
        self._cell: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for cls in (a.get("class") or "").split():
            self.counts[cls] = self.counts.get(cls, 0) + 1
        if tag == "table" and "data-group" in a:
            self._group = int(a["data-group"])
            self.heat[self._group] = []
        elif tag == "tr" and self._group is not None and "data-rollout" in a:
            self.heat[self._group].append([])
        elif tag == "td" and self._group is not None and "data-adv" in a:
            self._cell, self._text = a, []

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.heat[self._group][-1].append((self._cell, "".join(self._text)))
            self._cell = None
        elif tag == "table":
            self._group = None


def parse(html: str) -> Tables:
    p = Tables()
    p.feed(html)
    return p


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    """The Chromium binary, or a pytest skip that says why the browser tests do not run."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; .ci/run installs it): "
                "the browser tests of the run viewer did not run")


def run_chromium(page: Path, profile: Path, *extra: str, timeout: int = 90) -> subprocess.CompletedProcess:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_messages(stderr: str) -> list[str]:
    """Chromium's log lines of the page's JavaScript console (uncaught errors, console.error,
    console.log: the log does not say the level). The viewer's pages run no script, so any such
    line is a fault."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def rollout_section(page: str, rollout_index: int) -> str:
    """The panel of one rollout on a group page."""
    start = page.index(f'<section class="rollout" id="r{rollout_index:02d}">')
    return page[start: page.index("</section>", start)]
