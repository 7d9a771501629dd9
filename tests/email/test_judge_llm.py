"""LLMJudge against a real HTTP server on 127.0.0.1 (port 0) that the test starts."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inboxrl.email.judge import LLMJudge, parse_verdict


class FakeServer:
    """Serves /v1/chat/completions. ``script`` is a list of actions consumed one per request
    (the last one repeats): ("reply", text) | ("status", code) | ("sleep", seconds, text) |
    ("raw", bytes)."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body,
                                        "auth": self.headers.get("Authorization")})
                action = server.script[0] if len(server.script) == 1 else server.script.pop(0)
                try:
                    self._act(action)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _act(self, action):
                if action[0] == "status":
                    self.send_response(action[1])
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                if action[0] == "truncated":  # promises more bytes than it sends
                    self.send_response(200)
                    self.send_header("Content-Length", "500")
                    self.end_headers()
                    self.wfile.write(b'{"choices": [')
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = ("reply", action[2])
                data = action[1] if action[0] == "raw" else json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": action[1]}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def judge_for(server, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 2)
    return LLMJudge(server.url, "judge-model", api_key_env="INBOXRL_TEST_JUDGE_KEY", **kw)


def test_yes_and_no_verdicts_and_request_shape(monkeypatch):
    monkeypatch.setenv("INBOXRL_TEST_JUDGE_KEY", "sekret")
    with FakeServer([("reply", "Yes."), ("reply", "no")]) as srv:
        j = judge_for(srv)
        v1 = j.judge("How much?", "$48,200", "48200")
        v2 = j.judge("How much?", "$48,200", "51000")
    assert (v1.correct, v1.error) == (True, None)
    assert (v2.correct, v2.error) == (False, None)
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sekret"
    assert req["body"]["model"] == "judge-model"
    assert "$48,200" in req["body"]["messages"][-1]["content"]


def test_slow_handler_times_out_then_reports_error():
    with FakeServer([("sleep", 1.0, "yes")]) as srv:
        j = judge_for(srv, timeout=0.2, retries=1)
        v = j.judge("q", "a", "a")
    assert v.correct is None and "timed out" in v.error
    assert j.num_requests == 2


def test_http_500_then_success_after_retries():
    with FakeServer([("status", 500), ("status", 503), ("reply", "yes")]) as srv:
        j = judge_for(srv, retries=3)
        v = j.judge("q", "a", "a")
    assert v.correct is True and v.error is None
    assert len(srv.requests) == 3


def test_permanent_500_gives_error_after_all_attempts():
    with FakeServer([("status", 500)]) as srv:
        j = judge_for(srv, retries=2)
        v = j.judge("q", "a", "a")
    assert v.correct is None and "HTTP 500" in v.error and "3 attempts" in v.error
    assert len(srv.requests) == 3


def test_http_400_is_not_retried():
    with FakeServer([("status", 400)]) as srv:
        v = judge_for(srv, retries=3).judge("q", "a", "a")
    assert v.correct is None and "HTTP 400" in v.error
    assert len(srv.requests) == 1


def test_unparseable_replies_are_retried_then_reported():
    with FakeServer([("reply", "Hmm, hard to say."), ("raw", b"not json"), ("reply", "maybe")]) as srv:
        v = judge_for(srv, retries=2).judge("q", "a", "b")
    assert v.correct is None and "unparseable" in v.error
    assert len(srv.requests) == 3


def test_unparseable_then_good_reply():
    with FakeServer([("raw", b'{"choices": []}'), ("reply", "No")]) as srv:
        v = judge_for(srv, retries=1).judge("q", "a", "b")
    assert v.correct is False and v.error is None


def test_cache_hit_does_not_call_server_again(tmp_path):
    with FakeServer([("reply", "yes")]) as srv:
        v1 = judge_for(srv, cache_dir=tmp_path).judge("q", "ref", "ans")
        v2 = judge_for(srv, cache_dir=tmp_path).judge("q", "ref", "ans")  # a fresh judge object
        v3 = judge_for(srv, cache_dir=tmp_path).judge("q", "ref", "other answer")
    assert v1.correct is True and not v1.cached
    assert v2.correct is True and v2.cached
    assert v3.correct is True and not v3.cached
    assert len(srv.requests) == 2
    assert len(list(tmp_path.glob("*.json"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_errors_are_not_cached(tmp_path):
    with FakeServer([("status", 500), ("reply", "no")]) as srv:
        v1 = judge_for(srv, cache_dir=tmp_path, retries=0).judge("q", "r", "a")
        v2 = judge_for(srv, cache_dir=tmp_path, retries=0).judge("q", "r", "a")
    assert v1.correct is None and v2.correct is False
    assert len(srv.requests) == 2


def test_unreachable_server_is_an_error_not_an_exception():
    j = LLMJudge("http://127.0.0.1:9/v1", "m", retries=1, backoff=0.01, timeout=1)
    v = j.judge("q", "a", "a")
    assert v.correct is None and v.error


@pytest.mark.parametrize("content, expected", [
    ("yes", True), ("Yes, the answer matches.", True), ("NO.", False), ("Correct", True),
    ("The answer is correct: yes", True), ("The candidate is wrong, so no", False),
    ("Either yes or no", None), ("", None), ("I cannot tell", None),
])
def test_parse_verdict(content, expected):
    assert parse_verdict(content) is expected


def test_truncated_response_is_retried():
    with FakeServer([("truncated",), ("reply", "yes")]) as srv:
        v = judge_for(srv, retries=1).judge("q", "a", "a")
    assert v.correct is True and len(srv.requests) == 2


def test_max_tokens_can_be_left_to_the_server():
    with FakeServer([("reply", "no")]) as srv:
        judge_for(srv, max_tokens=None).judge("q", "a", "b")
        judge_for(srv).judge("q", "a", "c")
    assert "max_tokens" not in srv.requests[0]["body"] and srv.requests[1]["body"]["max_tokens"] == 8
