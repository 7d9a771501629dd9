"""Console log strings: advantage table, Group Summary, phases only when verbose, rubric stats."""
from __future__ import annotations

import io
import re

from rich.console import Console

from _logs_util import make_traj
from inboxrl.agent.trajectory import Turn
from inboxrl.email.types import Scenario, ToolCall
from inboxrl.logs import console_step as fmt
from inboxrl.logs.console import ConsoleLog
from inboxrl.logs.eval_stats import eval_statistics
from inboxrl.logs.metrics import TrainingMetrics, group_views

HEADERS = ["STEP PHASE 1: ROLLOUT COLLECTION", "STEP PHASE 2: REWARDS & ADVANTAGES",
           "STEP PHASE 3: MICRO-BATCHING", "STEP PHASE 4: BACKPROPAGATION & OPTIMIZATION"]


def capture() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=120), buf


def search_turn(i, kws, hits, events=()):
    return Turn(index=i, tool_call=ToolCall("search_emails", {"keywords": kws}),
                tool_result="[" + ",".join('{"message_id": "m%d"}' % k for k in range(hits)) + "]",
                events=list(events))


def trajs():
    t0 = [search_turn(0, ["k1", "k2"], 3, ["found_reference"]),
          Turn(index=1, tool_call=ToolCall("read_email", {"message_id": "<id-7>"}), events=["read_reference"]),
          Turn(index=2, tool_call=ToolCall("return_final_answer", {"answer": "Friday [soon]", "sources": []}))]
    t1 = [Turn(index=0, parse_error="unparseable: no JSON", events=["format_error"])]
    t2 = [search_turn(0, ["k1", "k2"], 0, ["zero_results"]), search_turn(1, ["k2", "k1"], 0, ["repeated_search"])]
    return [
        make_traj("s1", 1.3, group_id=0, rollout_index=0, correct=True, turns=t0,
                  advantages=[0.5123, -1.0244, 1.0], model_tokens=40, other_tokens=60),
        make_traj("s1", -2.0, group_id=0, rollout_index=1, turns=t1, advantages=[-0.25],
                  finish_reason="max_turns", model_tokens=10, other_tokens=90),
        make_traj("s1", 0.0, group_id=0, rollout_index=2, idk=True, turns=t2, advantages=[0.0, 0.33333],
                  model_tokens=20, other_tokens=80),
        make_traj("s2", 0.0, group_id=1, rollout_index=0, idk=True, kept=False, advantages=[0.777],
                  model_tokens=5, other_tokens=95),
        make_traj("s2", 0.0, group_id=1, rollout_index=1, idk=True, kept=False, advantages=[0.777],
                  model_tokens=5, other_tokens=95),
    ]


SCEN = [Scenario("s1", "When is the [bold]offsite?", "Friday", ["<id-7>"], "a@x.com", "2001-05-01"),
        Scenario("s2", "Who signed?", "Kay", ["<id-9>"], "a@x.com", "2001-05-01")]


def run_step(verbose: bool) -> str:
    c, buf = capture()
    log = ConsoleLog(verbose=verbose, console=c)
    t = trajs()
    groups = group_views(t, SCEN)
    m = TrainingMetrics.from_rollouts(3, t, total_steps=10, loss=0.0123, grad_norm=0.4567,
                                      rollout_time=8.0, training_time=4.0, step_time=12.0)
    m.finalize_timing()
    log.step_start(3, 10)
    log.collecting(3, 2)
    log.rollouts_done(groups)
    log.micro_batching(2, 4096, [300, 200])
    log.optimization(m)
    log.step_end(m, groups)
    return buf.getvalue()


def test_verbose_step_log():
    out = run_step(verbose=True)
    assert "\x1b[" not in out  # no ANSI codes when not a terminal
    positions = [out.index(h) for h in HEADERS]
    assert positions == sorted(positions)
    assert "Step 3/10" in out and "Collecting 3 rollouts for 2 queries..." in out
    assert "Groups: 1/2 kept (1 filtered), 4/5 finished early" in out
    # per-group details, shown verbatim (no markup interpretation)
    assert "Q: When is the [bold]offsite?" in out and "Reference: Friday" in out
    assert 'search_emails(["k1","k2"]) -> 3 hits [found ref]' in out
    assert "read_email(<id-7>) [read ref]" in out
    assert 'search_emails(["k2","k1"]) -> 0 hits [repeat]' in out
    assert "parse error: unparseable: no JSON [format error]" in out
    assert "answer: ans-s1 | correct | reward +1.300" in out
    assert "| idk | reward +0.000" in out and "| no answer | reward -2.000" in out
    assert "filtered (low variance)" in out
    # the advantage table of the kept group only
    assert out.count("Turn-by-Turn Advantage") == 1
    table = out[out.index("Turn-by-Turn Advantage"):out.index("Groups:")]
    rows = {line.split()[1]: line for line in table.splitlines() if re.match(r"\W*r\d", line)}
    assert re.findall(r"[+-]\d\.\d{3}|(?<=\s)-(?=\s)", rows["r0"]) == ["+0.512", "-1.024", "+1.000", "+1.300"]
    assert re.findall(r"[+-]\d\.\d{3}|(?<=\s)-(?=\s)", rows["r1"]) == ["-0.250", "-", "-", "-2.000"]
    assert re.findall(r"[+-]\d\.\d{3}|(?<=\s)-(?=\s)", rows["r2"]) == ["+0.000", "+0.333", "-", "+0.000"]
    assert "+0.777" not in out
    # phase 4 and the Group Summary
    assert "grad norm 0.4567" in out and "tokens trained 70" in out and "total loss 0.0123" in out
    assert "2 micro-batches under a budget of 4,096 tokens" in out
    summary = out[out.index("Group Summary"):]
    assert re.search(r"Total groups\s+│?\s*2", summary)
    assert re.search(r"Kept\s+│?\s*1", summary)
    assert re.search(r"Filtered \(low variance\)\s+│?\s*1", summary)
    assert "4/5 finished early" in summary
    assert "Rollout time" in summary and "8.0s" in summary and "Training time" in summary and "4.0s" in summary
    assert re.search(r"Total tokens\s+│?\s*500", summary)
    assert re.search(r"Trainable tokens\s+│?\s*70 \(14\.0%\)", summary)
    # step summary with ETA = 12 s x 7 steps left
    assert "ETA 1m 24s" in out and "accuracy 20.0%" in out and "loss 0.0123" in out


def test_concise_step_log_has_no_phases():
    out = run_step(verbose=False)
    for h in HEADERS:
        assert h not in out
    assert "Turn-by-Turn Advantage" not in out and "Group Summary" not in out
    assert "Step 3/10" in out and "Collecting 3 rollouts for 2 queries..." in out
    assert "Groups: 1/2 kept (1 filtered), 4/5 finished early" in out
    assert "reward mean -0.140 std" in out and "range [-2.000, +1.300]" in out
    assert "moving avg -0.140" in out and "tokens 500 (trainable 70, 14.0%)" in out
    assert len(out.splitlines()) < 12


def test_skipped_step_notice_in_both_modes():
    m = TrainingMetrics(step=2, total_steps=4, skipped=True, skipped_steps=1)
    for verbose in (True, False):
        c, buf = capture()
        ConsoleLog(verbose, c).optimization(m, skip_reason="all groups filtered")
        assert "Skipped the update: all groups filtered (1 skipped so far)" in buf.getvalue()


def test_eval_report_detailed_rubric_statistics(tmp_path):
    t = [make_traj("s1", 1.2, correct=True, found=True, read=True, unique=2, repeated=1, num_turns=4),
         make_traj("s2", 0.0, idk=True, found=True, unique=1, num_turns=6),
         make_traj("s3", -1.0, attempted=True, unique=1, num_turns=3),
         make_traj("s4", 0.0, attempted=True, judge_error="timeout", num_turns=2)]
    c, buf = capture()
    path = tmp_path / "eval_logs" / "eval_step_0005.json"
    ConsoleLog(False, c).eval_report(eval_statistics(t, 5, 3.0, {"s1": 0.0, "s2": 0.0, "s3": 0.0}), path)
    out = buf.getvalue()
    assert "Detailed Rubric Statistics" in out
    assert re.search(r"Attempted answers\s+│?\s*3/4 \(75\.0%\)", out)
    assert re.search(r"Found correct email\s+│?\s*2/4 \(50\.0%\)", out)
    assert re.search(r"Read correct email\s+│?\s*1/4 \(25\.0%\)", out)
    assert "1 of 5 (4 unique)" in out
    assert re.search(r"Avg turns \(correct answers\)\s+│?\s*4\.00", out)
    assert "6.00 (1 answers)" in out
    assert re.search(r"Avg search attempts\s+│?\s*1\.25", out)
    assert "33.3% (1/3)" in out
    assert "33.3% (ties 33.3%, 3 scenarios)" in out
    assert re.search(r"Judge errors\s+│?\s*1", out)
    assert f"Saved eval to {path}" in out
    c2, buf2 = capture()
    ConsoleLog(False, c2).eval_report(eval_statistics(t, 5, 3.0), None)
    assert "no baseline" in buf2.getvalue()


def test_format_duration():
    assert fmt.format_duration(42) == "42.0s"
    assert fmt.format_duration(185) == "3m 05s"
    assert fmt.format_duration(7620) == "2h 07m"
    assert fmt.format_duration(None) == "?"


def test_default_console_is_plain_120_columns_when_redirected(tmp_path):
    import subprocess
    import sys

    code = ("from inboxrl.logs.console import ConsoleLog\n"
            "from inboxrl.logs.metrics import TrainingMetrics\n"
            "log = ConsoleLog(verbose=True)\n"
            "log.step_start(1, 2)\n"
            "log.optimization(TrainingMetrics(step=1, grad_norm=1.0))\n"
            "print(log.console.width)\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "\x1b[" not in out
    assert "STEP PHASE 4: BACKPROPAGATION & OPTIMIZATION" in out
    assert out.strip().splitlines()[-1] == "120"
    assert len(out.splitlines()[0]) == 120  # the step rule spans the fixed width


def test_trainer_facing_api_with_advantage_and_update_stats():
    """The names the trainer calls: step_header, phase, groups(trajs, scenarios, adv), backprop,
    group_summary, step_summary; phase headers once each, in order."""
    from inboxrl.grpo.advantages import AdvantageStats, GroupStats
    from inboxrl.grpo.update import UpdateStats
    from inboxrl.logs.metrics import build_training_metrics

    c, buf = capture()
    log = ConsoleLog(verbose=True, console=c)
    t = trajs()
    # the advantage stats say group 1 is filtered and group 0 kept (trajectory flags agree)
    adv = AdvantageStats(groups_total=2, groups_kept=1, groups_filtered=1, rollouts_kept=3,
                         groups=[GroupStats(0, 3, 0, -0.233, 1.357, 0.5, True),
                                 GroupStats(1, 2, 0, 0.0, 0.0, 0.0, False)])
    upd = UpdateStats(loss=0.25, policy_loss=0.2, kl=0.05, grad_norm=2.5, trainable_tokens=70,
                      total_tokens=500, num_micro_batches=3)
    log.step_header(2, 5)
    log.phase(1, "ROLLOUT COLLECTION")
    log.collecting(3, 2)
    log.phase(2, "REWARDS & ADVANTAGES")
    log.groups(t, SCEN, adv)
    log.phase(3, "MICRO-BATCHING")
    log.phase(4, "BACKPROPAGATION & OPTIMIZATION")
    log.backprop(upd)
    m = build_training_metrics(step=2, trajectories=t, adv=adv, update=upd, learning_rate=1e-5,
                               rollout_time=3.0, training_time=1.0, step_time=4.0,
                               reward_history=[0.3, 0.1], skipped_steps=0)
    log.group_summary(m)
    log.step_summary(m, 5)
    out = buf.getvalue()
    assert [out.count(h) for h in HEADERS] == [1, 1, 1, 1]
    assert [out.index(h) for h in HEADERS] == sorted(out.index(h) for h in HEADERS)
    assert "grad norm 2.5000 | tokens trained 70 | total loss 0.2500" in out and "3 micro-batches" in out
    assert "Q: When is the [bold]offsite?" in out and out.count("Turn-by-Turn Advantage") == 1
    assert re.search(r"Trainable tokens\s+│?\s*70 \(14\.0%\)", out)
    assert "Step 2/5 done in 4.0s" in out and "ETA 12.0s" in out
    # metrics from the stats: moving average over (0.3, 0.1, -0.14); update values copied
    assert abs(m.reward_moving_avg - (0.3 + 0.1 - 0.14) / 3) < 1e-9
    assert (m.loss, m.kl, m.grad_norm, m.num_micro_batches) == (0.25, 0.05, 2.5, 3)
    assert (m.groups_kept, m.groups_filtered, m.learning_rate) == (1, 1, 1e-5)
    assert m.tokens_per_second == 125.0
    c2, buf2 = capture()
    ConsoleLog(False, c2).backprop(UpdateStats(skipped=True, skip_reason="no kept group"))
    assert buf2.getvalue().strip() == "Skipped the update: no kept group"


def test_format_call_edge_cases():
    err = Turn(index=0, tool_call=ToolCall("read_email", {"message_id": "x"}),
               tool_result='{"error":"not in this inbox"}', events=["invalid_read"])
    assert fmt.format_call(err) == "read_email(x) -> error [invalid read]"
    s = Turn(index=0, tool_call=ToolCall("search_emails", {"keywords": "budget", "from_addr": "a@b.c",
                                                           "max_results": 5}),
             tool_result='[{"message_id":"m1"}]')
    assert fmt.format_call(s) == 'search_emails("budget", from_addr=a@b.c, max_results=5) -> 1 hit'
    u = Turn(index=0, tool_call=ToolCall("delete_all", {"now": True}), events=["format_error"])
    assert fmt.format_call(u) == 'delete_all({"now": true}) [format error]'
    long = Turn(index=0, tool_call=ToolCall("return_final_answer", {"answer": "x" * 200}))
    assert len(fmt.format_call(long)) < 80 and fmt.format_call(long).endswith('…")')
    assert fmt.verdict(make_traj("a", 0.0, judge_error="boom", correct=True)) == "judge error"
