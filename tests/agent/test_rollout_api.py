"""The API rollout path against a loopback OpenAI-compatible server."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _rollout_util import FakeEnv, scenario
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.policy.openai_api import OpenAIChatPolicy


def reply(message):
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": "stop"}], "usage": {"completion_tokens": 9}}


def native(name, args, call_id):
    return {"content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}},
        {"id": call_id + "b", "type": "function", "function": {"name": "read_email", "arguments": "{}"}}]}


def agent(body):
    """A scripted agent: the turn is the number of assistant messages so far."""
    question = body["messages"][1]["content"]
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    if "number 9" in question:
        return 400, {"error": {"message": "bad request"}}
    if turn == 0:
        return 200, reply(native("search_emails", {"keywords": ["x"]}, "c0"))
    if turn == 1:  # a JSON call written as text (parsed from the content)
        return 200, reply({"content": 'Reading: {"name": "read_email", "arguments": {"message_id": "<m1@x>"}}'})
    if turn == 2:
        return 200, reply({"content": "I am thinking."})
    return 200, reply(native("return_final_answer", {"answer": "answer 1", "sources": ["<m1@x>"]}, "c3"))


@pytest.fixture
def server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            status, data = agent(body)
            data = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    httpd.shutdown()
    httpd.server_close()


def test_api_rollouts(server):
    url, seen = server
    policy = OpenAIChatPolicy(base_url=url, model="m", api_key_env="INBOXRL_TEST_NO_KEY", retries=0)
    reqs = [RolloutRequest(scenario(1), 0, 0), RolloutRequest(scenario(9), 1, 0),
            RolloutRequest(scenario(1), 0, 1)]
    s = RolloutSettings(max_turns=4, greedy=True, progress=False, batch_size=2)
    ok, failed, ok2 = run_rollouts(policy, reqs, lambda sc: FakeEnv(sc), s)

    assert ok.finish_reason == "answered" and ok.rubric.answer_correct
    assert [t.tool_call.name if t.tool_call else None for t in ok.turns] == [
        "search_emails", "read_email", None, "return_final_answer"]
    assert ok.turns[2].parse_error.startswith("unparseable") and ok.turns[2].process_reward == -1.0
    assert ok.token_ids == [] and ok.turns[0].num_tokens == 9
    assert ok.reward == pytest.approx(1.0 + 0.3 + 0.1 * 0.0)
    roles = [m["role"] for m in ok.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "user", "assistant"]
    assert ok.messages[2]["tool_calls"][0]["id"] == "c0" and len(ok.messages[2]["tool_calls"]) == 1
    assert ok.messages[3]["tool_call_id"] == "c0"
    assert "Question number 1?" in ok.messages[1]["content"]
    assert ok2.turns[0].tool_call == ok.turns[0].tool_call

    assert failed.finish_reason == "error" and "400" in failed.rubric.rollout_error
    body = seen[0]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 128
    assert [t["function"]["name"] for t in body["tools"]] == [
        "search_emails", "read_email", "return_final_answer"]
    assert isinstance(body["seed"], int)
