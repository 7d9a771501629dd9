"""OpenAIChatPolicy against a real HTTP server on 127.0.0.1 started by the test."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

from inboxrl.email.types import ToolCall
from inboxrl.policy.openai_api import OpenAIAPIError, OpenAIChatPolicy

Responder = Callable[[dict[str, Any], int], tuple[int, dict[str, Any] | str, float]]


class FakeServer:
    """Answers POST /v1/chat/completions with ``responder(body, call_number)``."""

    def __init__(self, responder: Responder):
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                outer.requests.append({"path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization")})
                status, reply, delay = responder(body, len(outer.requests))
                time.sleep(delay)
                data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(responder: Responder) -> FakeServer:
        servers.append(FakeServer(responder))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


MESSAGES = [{"role": "user", "content": "When is the offsite?"}]
TOOLS = [{"type": "function", "function": {"name": "search_emails", "parameters": {
    "type": "object", "properties": {"keywords": {"type": "array", "items": {"type": "string"}}}}}}]


def test_content_reply_and_request_shape(serve, monkeypatch):
    monkeypatch.setenv("INBOXRL_TEST_KEY", "sk-test-123")
    server = serve(lambda body, n: (200, completion({"content": "It is on May 4."}), 0.0))
    policy = OpenAIChatPolicy(server.base_url + "/", "my-model", api_key_env="INBOXRL_TEST_KEY",
                              temperature=0.3, max_tokens=64)
    reply = policy.complete(MESSAGES, seed=7)
    assert reply.text == "It is on May 4." and reply.tool_calls == []
    assert reply.finish_reason == "stop" and reply.usage["total_tokens"] == 18
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test-123"
    assert req["body"] == {"model": "my-model", "messages": MESSAGES, "temperature": 0.3,
                           "max_tokens": 64, "seed": 7}
    policy.complete(MESSAGES, tools=TOOLS, temperature=0.0, max_tokens=5)
    second = server.requests[1]["body"]
    assert second["tools"] == TOOLS and second["temperature"] == 0.0
    assert second["max_tokens"] == 5 and "seed" not in second


def test_no_key_sends_no_auth_header(serve, monkeypatch):
    monkeypatch.delenv("INBOXRL_ABSENT_KEY", raising=False)
    server = serve(lambda body, n: (200, completion({"content": "ok"}), 0.0))
    OpenAIChatPolicy(server.base_url, "m", api_key_env="INBOXRL_ABSENT_KEY").complete(MESSAGES)
    assert server.requests[0]["auth"] is None


def test_tool_calls_reply(serve):
    calls = [
        {"id": "z", "type": "function", "function": {"name": "", "arguments": "{}"}},  # no name
        {"id": "a", "type": "function", "function": {
            "name": "search_emails", "arguments": '{"keywords": ["offsite", "May"]}'}},
        {"id": "b", "type": "function", "function": {
            "name": "read_email", "arguments": '{"message_id": "<m1@x>"'}},  # truncated JSON
        {"id": "c", "type": "function", "function": {"name": "read_email", "arguments": "[1]"}},
    ]
    server = serve(lambda body, n: (200, completion({"content": None, "tool_calls": calls},
                                                    "tool_calls"), 0.0))
    reply = OpenAIChatPolicy(server.base_url, "m").complete(MESSAGES, tools=TOOLS)
    assert reply.tool_calls == [ToolCall("search_emails", {"keywords": ["offsite", "May"]})]
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_call_ids == ["a"]
    assert reply.text == ('{"name": "", "arguments": {}}\n'
                          '{"name": "read_email", "arguments": {"message_id": "<m1@x>"}\n'
                          '{"name": "read_email", "arguments": [1]}')
    assert reply.raw_message["tool_calls"][2]["id"] == "b"


def test_500_then_success_retries(serve):
    def responder(body, n):
        if n == 1:
            return 500, {"error": {"message": "overloaded"}}, 0.0
        return 200, completion({"content": "second time lucky"}), 0.0

    server = serve(responder)
    reply = OpenAIChatPolicy(server.base_url, "m", retries=2, backoff=0.01).complete(MESSAGES)
    assert reply.text == "second time lucky" and len(server.requests) == 2


def test_persistent_500_gives_up_with_status(serve):
    server = serve(lambda body, n: (503, {"error": "down"}, 0.0))
    policy = OpenAIChatPolicy(server.base_url, "m", retries=2, backoff=0.01)
    with pytest.raises(OpenAIAPIError, match="HTTP 503.*3 attempts") as info:
        policy.complete(MESSAGES)
    assert info.value.status == 503 and len(server.requests) == 3


def test_client_error_is_not_retried_and_names_key(serve, monkeypatch):
    monkeypatch.setenv("INBOXRL_TEST_KEY", "wrong")
    server = serve(lambda body, n: (401, {"error": {"message": "invalid api key"}}, 0.0))
    policy = OpenAIChatPolicy(server.base_url, "m", api_key_env="INBOXRL_TEST_KEY", backoff=0.01)
    with pytest.raises(OpenAIAPIError, match=r"HTTP 401 \(check the API key in \$INBOXRL_TEST_KEY"):
        policy.complete(MESSAGES)
    assert len(server.requests) == 1


def test_timeout_then_success_and_timeout_exhausted(serve):
    def responder(body, n):
        return 200, completion({"content": f"call {n}"}), (1.0 if n == 1 else 0.0)

    server = serve(responder)
    reply = OpenAIChatPolicy(server.base_url, "m", timeout=0.2, retries=1,
                             backoff=0.01).complete(MESSAGES)
    assert reply.text == "call 2"

    slow = serve(lambda body, n: (200, completion({"content": "late"}), 1.0))
    policy = OpenAIChatPolicy(slow.base_url, "m", timeout=0.2, retries=1, backoff=0.01)
    start = time.perf_counter()
    with pytest.raises(OpenAIAPIError, match="timed out after 0.2 s.*2 attempts"):
        policy.complete(MESSAGES)
    assert time.perf_counter() - start < 1.5 and len(slow.requests) == 2


def test_bad_bodies_and_unreachable_server(serve):
    server = serve(lambda body, n: (200, "not json", 0.0) if n == 1 else (200, {"choices": []}, 0.0))
    policy = OpenAIChatPolicy(server.base_url, "m", retries=0)
    with pytest.raises(OpenAIAPIError, match="non-JSON"):
        policy.complete(MESSAGES)
    with pytest.raises(OpenAIAPIError, match="no choices"):
        policy.complete(MESSAGES)
    dead_port = server.httpd.server_address[1]
    server.close()
    dead = OpenAIChatPolicy(f"http://127.0.0.1:{dead_port}/v1", "m", retries=1, backoff=0.01)
    with pytest.raises(OpenAIAPIError, match="cannot reach|connection"):
        dead.complete(MESSAGES)
