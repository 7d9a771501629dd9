"""A hung judge does not hold up the end of a run: closing the judge cancels the verdicts not
started and stops every retry, its threads are daemon threads (the interpreter does not join
them at exit), and an ``inboxrl eval`` interrupted (Ctrl-C) while it waits for a hung judge exits
at once instead of after ``timeout × (retries + 1)`` per answer (docs/robustness.md)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inboxrl.email.judge import LLMJudge
from inboxrl.email.judge_pool import ConcurrentJudge, DaemonPool

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S, RETRIES = 4, 4  # an answer may cost (RETRIES + 1) x TIMEOUT_S = 20 s (+ 7.5 s backoff)


class Server:
    """127.0.0.1 ``/v1/chat/completions``: a request with ``tools`` (the policy under eval) gets a
    ``return_final_answer`` call; every other request (the judge) hangs until the server closes."""

    def __init__(self):
        self.judge_requests = 0
        self.release = threading.Event()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not body.get("tools"):
                    srv.judge_requests += 1
                    srv.release.wait(120)
                call = {"id": "c0", "type": "function", "function": {
                    "name": "return_final_answer", "arguments": json.dumps({"answer": "x", "sources": []})}}
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "",
                                                            "tool_calls": [call]}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _wait_for(cond, limit_s=60.0):
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def test_close_cancels_waiting_verdicts_and_stops_retries(server):
    judge = ConcurrentJudge(LLMJudge(server.url, "m", api_key_env="", timeout=1, retries=3, backoff=0.1),
                            workers=1, budget_s=60)
    futures = [judge.submit(f"q{i}", "a", "b") for i in range(3)]
    _wait_for(lambda: server.judge_requests == 1)  # the first verdict's first attempt hangs
    judge.close()
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("judge_"))
    assert futures[1].cancelled() and futures[2].cancelled()  # never started
    verdict = futures[0].result(timeout=30)  # the attempt in flight ends at its timeout, no retry
    assert verdict.correct is None and "abandoned after 1 attempts" in verdict.error
    assert server.judge_requests == 1
    late = judge.submit("q9", "a", "b").result(timeout=0)  # after close: an error at once, no request
    assert late.correct is None and "shut down" in late.error and server.judge_requests == 1


def test_a_daemon_pool_runs_calls_concurrently_and_in_order():
    pool = DaemonPool(3, name="t")
    gate = threading.Barrier(3, timeout=10)
    assert [f.result(timeout=10) for f in [pool.submit(lambda i=i: gate.wait() * 0 + i) for i in range(3)]] == [0, 1, 2]
    assert [f.result(timeout=10) for f in [pool.submit(lambda i=i: i * i) for i in range(6)]] == [0, 1, 4, 9, 16, 25]
    assert len(pool._threads) == 3 and all(t.daemon for t in pool._threads)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: 1)


@pytest.mark.timeout(240)
def test_an_interrupted_eval_with_a_hung_judge_exits_at_once(server, tmp_path):
    from inboxrl.synth.data import make_data

    data = make_data(tmp_path / "data", seed=3, num_emails=100)
    cmd = [sys.executable, "-m", "inboxrl.cli", "eval", "--api-base-url", server.url, "--api-model", "m",
           "--api-key-env", "", "--db-path", str(data.db_path), "--scenarios-path", str(data.scenarios_path),
           "--output-dir", str(tmp_path / "out"), "--eval-dataset-size", "3", "--max-turns", "2",
           "--judge", "llm", "--judge-base-url", server.url, "--judge-model", "m", "--judge-api-key-env", "",
           "--judge-timeout", str(TIMEOUT_S), "--judge-retries", str(RETRIES), "--judge-concurrency", "1",
           "--judge-step-budget", "600"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(lambda: server.judge_requests >= 1 or proc.poll() is not None, limit_s=180)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)  # every answer is in: the eval waits for the verdicts (budget 600 s)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=120)
        exited_after = time.monotonic() - t0
        print(f"exited {exited_after:.2f} s after Ctrl-C")  # docs/results.md
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    # before: the interpreter joined the judge's pool threads at exit: every queued answer still
    # tried (RETRIES + 1) times, TIMEOUT_S each; a generous bound, far below one answer's worth
    assert exited_after < RETRIES * TIMEOUT_S, exited_after
    assert server.judge_requests <= 2  # no retry and no queued verdict started after Ctrl-C


def test_a_training_run_closes_its_judge_on_ctrl_c(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import fault_drill
    from inboxrl.logs.console import ConsoleLog
    from inboxrl.run.train import build_trainer

    assets = fault_drill.make_assets(tmp_path)
    cfg = fault_drill.drill_settings(assets, tmp_path / "run", judge="llm", judge_base_url="http://127.0.0.1:9/v1",
                                     judge_model="m", eval_steps=0, run_baseline_eval="false")
    trainer = build_trainer(cfg, ConsoleLog(verbose=False))
    assert isinstance(trainer.judge, ConcurrentJudge) and not trainer.judge.closed

    def interrupted(step):
        raise KeyboardInterrupt

    trainer.train_step = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert trainer.judge.closed and not trainer.store.lock.held
