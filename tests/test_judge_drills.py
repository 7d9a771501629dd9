"""Judge drills against a real HTTP server on 127.0.0.1 that the test starts: 500, HTML, empty
choices, "maybe", 404 and a hang past the timeout each end in a judge error (never an
exception); verdicts are requested concurrently while the batch decodes; the rollouts wait for
them at most the step's judge budget; judge-error rollouts are left out of the advantages."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _rollout_util import ScriptedModel, one_thread  # noqa: F401
from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.agent.trajectory import ToolCall
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import LLMJudge
from inboxrl.email.judge_pool import ConcurrentJudge
from inboxrl.email.types import Scenario
from inboxrl.grpo.advantages import assign_advantages
from inboxrl.logs.console_step import step_summary_text
from inboxrl.logs.metrics import TrainingMetrics
from inboxrl.policy.hf import HFPolicy, make_tiny_model


class JudgeServer:
    """``/v1/chat/completions``; ``behave(question) -> action``: ("yes"|"no"|text) a reply,
    ("status", code), ("raw", bytes), ("hang", seconds). ``max_in_flight`` counts concurrency;
    with ``gather=n`` each request waits (up to 10 s) until n requests are in flight."""

    def __init__(self, behave, gather: int = 0):
        self.behave, self.gather = behave, gather
        self.requests, self.in_flight, self.max_in_flight = 0, 0, 0
        self.cond = threading.Condition()
        self.release = threading.Event()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][1]["content"].split("\n")[0]
                with srv.cond:
                    srv.requests += 1
                    srv.in_flight += 1
                    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                    srv.cond.notify_all()
                    if srv.gather:
                        srv.cond.wait_for(lambda: srv.in_flight >= srv.gather, timeout=10)
                try:
                    self._act(srv.behave(question))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with srv.cond:
                        srv.in_flight -= 1

            def _act(self, action):
                if action[0] == "status":
                    self.send_response(action[1])
                    self.end_headers()
                    self.wfile.write(b"error page")
                    return
                if action[0] == "hang":
                    srv.release.wait(action[1])
                    action = ("reply", "yes")
                data = action[1] if action[0] == "raw" else json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": action[1]}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(behave, gather=0):
        servers.append(JudgeServer(behave, gather))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


DRILLS = [  # server action, requests per answer with retries=1, the error it must give
    (("status", 500), 2, "HTTP 500"),
    (("raw", b"<html><body>502 Bad Gateway</body></html>"), 2, "unexpected response body"),
    (("raw", b'{"choices": []}'), 2, "unexpected response body"),
    (("reply", "maybe"), 2, "unparseable verdict"),
    (("status", 404), 1, "HTTP 404"),
    (("hang", 30), 2, "timed out after 0.5s"),
]


@pytest.mark.parametrize("action,requests,error", DRILLS, ids=["500", "html", "empty", "maybe", "404", "hang"])
def test_each_misbehaviour_is_a_judge_error(serve, action, requests, error):
    server = serve(lambda q: action)
    judge = ConcurrentJudge(LLMJudge(server.url, "m", api_key_env="", timeout=0.5, retries=1, backoff=0.01))
    futures = [judge.submit(f"q{i}", "ref", "answer") for i in range(3)]
    verdicts = [f.result(timeout=30) for f in futures]
    judge.close()
    assert all(v.correct is None and error in v.error for v in verdicts), verdicts
    assert server.requests == 3 * requests


def _answering_policy(scenarios, answers):
    model, tok = make_tiny_model(seed=2)
    r = ChatRenderer(tok)
    scripts = {sc.question: [r.format_call(ToolCall("return_final_answer", {"answer": a, "sources": []}))]
               for sc, a in zip(scenarios, answers)}
    return HFPolicy(ScriptedModel(model, tok, scripts), tok, renderer=r)


def _scenarios(n):
    return [Scenario(id=f"s{i}", question=f"What is code number {i}?", answer=f"K{i}7", message_ids=["<m@x>"],
                     inbox_address="u@x", query_date="2001-05-01") for i in range(n)]


def _rollouts(policy, scenarios, judge, group=2):
    requests = [RolloutRequest(s, g, j) for g, s in enumerate(scenarios) for j in range(group)]
    settings = RolloutSettings(max_turns=2, max_new_tokens=48, greedy=True, progress=False,
                               max_context_tokens=4000)
    return run_rollouts(policy, requests, lambda s: EmailTaskEnv(None, s, judge, 2, defer_verdict=True), settings)


def test_verdicts_are_requested_concurrently_while_decoding(serve, one_thread):
    scenarios = _scenarios(2)
    server = serve(lambda q: ("reply", "yes" if "number 0" in q else "no"), gather=4)
    judge = ConcurrentJudge(LLMJudge(server.url, "m", api_key_env="", timeout=20, retries=0), workers=4,
                            budget_s=60)
    trajs = _rollouts(_answering_policy(scenarios, ["K07", "K17"]), scenarios, judge)
    judge.close()
    assert server.max_in_flight == 4  # all four answers were being judged at the same time
    assert [t.rubric.answer_correct for t in trajs] == [True, True, False, False]
    assert all(t.rubric.judge_error is None for t in trajs)
    assert [round(t.reward, 3) for t in trajs] == [1.05, 1.05, -1.0, -1.0]  # rescored after the verdict


def test_a_hung_judge_costs_the_step_its_budget_and_the_step_goes_on(serve, one_thread):
    scenarios = _scenarios(2)
    server = serve(lambda q: ("reply", "yes") if "number 0" in q else ("hang", 60))
    judge = ConcurrentJudge(LLMJudge(server.url, "m", api_key_env="", timeout=60, retries=2), workers=4,
                            budget_s=1.0)
    trajs = _rollouts(_answering_policy(scenarios, ["K07", "K17"]), scenarios, judge)
    judge.close()
    assert [t.rubric.judge_error for t in trajs[:2]] == [None, None] and trajs[0].rubric.answer_correct
    late = trajs[2:]  # the hung answers: cut by the budget, not by their 60 s timeout
    assert all(t.rubric.judge_error == "no verdict within the step's judge budget (1 s)" for t in late)
    assert all(t.reward == 0.0 for t in late)  # the neutral placeholder
    stats = assign_advantages(trajs, mode="rollout", min_group_std=0.0)
    assert stats.rollouts_judge_error == 2 and not any(t.kept for t in late)
    m = TrainingMetrics.from_rollouts(1, trajs)
    assert m.judge_errors == 2 and m.avg_reward == pytest.approx(1.05)
    line = str(step_summary_text(m, None))
    assert "judge errors 2/4 rollouts (no verdict within the step's judge budget (1 s))" in line


def test_without_deferral_the_env_asks_a_concurrent_judge_at_once(serve):
    """Scripted episodes (reference agent, demonstrations) step the env by hand: no settling."""
    server = serve(lambda q: ("reply", "yes"))
    judge = ConcurrentJudge(LLMJudge(server.url, "m", api_key_env="", timeout=5, retries=0))
    env = EmailTaskEnv(None, _scenarios(1)[0], judge, 2)
    result = env.step(ToolCall("return_final_answer", {"answer": "K07", "sources": []}))
    judge.close()
    assert result.done and env.pending_verdict is None and env.rubric.answer_correct
