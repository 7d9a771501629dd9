"""The vLLM engine without vLLM: completions shaped like vLLM's ``RequestOutput`` become
token-faithful trajectories (cut where the tool call completes, seeded per rollout and turn,
multi-turn contexts re-sent as token ids), the server back-end's parsing, adapter / weight
pushes, and the one clear message when vLLM is missing. Runs on real vLLM are skipped with a
stated reason where vLLM or CUDA is absent."""
import importlib.util
import sys

import pytest
import torch

from _rollout_util import SCHEMAS, FakeEnv, one_thread, scenario  # noqa: F401
from _vllm_util import CompletionOutput, FakeLLM, Logprob, colocated, install_fake_vllm
from inboxrl.agent.chat import ChatRenderer
from inboxrl.agent.rollout import RolloutRequest, RolloutSettings, run_rollouts
from inboxrl.agent.trajectory import ToolCall
from inboxrl.agent.vllm_backends import (ColocatedBackend, ServerBackend, VLLMPolicy, VLLMSampler,
                                         VLLMSettings, sampling_params)
from inboxrl.agent.vllm_engine import EngineUnavailable, completion_tokens, import_vllm, turn_seed
from inboxrl.policy.tiny import make_tiny_model

SEARCH = ToolCall("search_emails", {"keywords": ["lease"]})
ANSWER = ToolCall("return_final_answer", {"answer": "answer 1", "sources": ["<m1@x>"]})


@pytest.fixture
def fake_vllm(monkeypatch):
    return install_fake_vllm(monkeypatch)


@pytest.fixture(scope="module")
def tok(one_thread):
    return make_tiny_model(seed=0)[1]


def settings(**kw):
    base = dict(max_turns=4, max_new_tokens=64, progress=False, check_template=True, seed=7)
    base.update(kw)
    return RolloutSettings(**base)


# -- tests --------------------------------------------------------------------------------------
def test_completion_tokens_reads_sampled_logprobs():
    out = CompletionOutput(0, "ab", (5, 9), -0.7, [{5: Logprob(-0.2, 1)}, {9: Logprob(-0.5, 3), 2: Logprob(-0.1, 1)}])
    assert completion_tokens(out) == ([5, 9], [-0.2, -0.5])
    with pytest.raises(ValueError, match="logprobs=0"):
        completion_tokens(CompletionOutput(0, "ab", (5, 9), None, None))
    with pytest.raises(ValueError, match="sampled token 9"):
        completion_tokens(CompletionOutput(0, "ab", (5, 9), None, [{5: Logprob(-0.2)}, {2: Logprob(-0.1)}]))


def test_vllm_rollouts_are_token_faithful(tok, fake_vllm):
    r = ChatRenderer(tok, SCHEMAS, few_shot=False)
    search, answer = r.format_call(SEARCH), r.format_call(ANSWER)
    junk = " and more text after the call"
    llm = FakeLLM(tok, {"Question number 1?": [search + junk, answer + "<|im_end|>"]})
    policy = VLLMPolicy(VLLMSampler(colocated(llm)), tok, r)
    reqs = [RolloutRequest(scenario(1), 0, 0), RolloutRequest(scenario(1), 0, 1)]
    a, b = run_rollouts(policy, reqs, lambda sc: FakeEnv(sc, max_turns=4), settings())
    assert a.finish_reason == "answered" and [t.text for t in a.turns] == [search, answer]
    assert [t.tool_call for t in a.turns] == [SEARCH, ANSWER]
    # the first turn is cut where its call completes: the junk after it was dropped
    model_ids = [i for i, s in zip(a.token_ids, a.sources) if s == "model"]
    assert r.decode(model_ids[:a.turns[0].num_tokens]) == search
    assert a.num_model_tokens == sum(t.num_tokens for t in a.turns)
    # the recorded log-probs are vLLM's, position by position, for the kept tokens
    n0 = a.turns[0].num_tokens
    lps = [lp for lp, s in zip(a.logprobs, a.sources) if s == "model"]
    assert lps[:n0] == pytest.approx([-0.01 * (i + 1) for i in range(n0)], abs=1e-9)
    # turn 2's prompt is the whole trajectory so far as token ids (prefix caching reuses it)
    (p1, params1, _), (p2, params2, _) = llm.calls
    first = a.sources.index("model")
    assert p1[0]["prompt_token_ids"] == a.token_ids[:first]
    second = first + n0 + next(i for i, s in enumerate(a.sources[first + n0:]) if s == "model")
    assert p2[0]["prompt_token_ids"] == a.token_ids[:second]
    # seeded per rollout and turn; log-probs of the sampled token only; stop on the end-of-turn
    assert params1[0]["seed"] == turn_seed(7, 0, 0, 0) != params1[1]["seed"] == turn_seed(7, 0, 1, 0)
    assert params2[0]["seed"] == turn_seed(7, 0, 0, 1)
    assert params1[0]["logprobs"] == 0 and set(params1[0]["stop_token_ids"]) == set(r.stop_token_ids)
    assert params1[0]["max_tokens"] == 64 and params1[0]["temperature"] == 1.0
    assert b.token_ids == a.token_ids  # the fake ignores seeds; the engine kept rollouts apart


def test_greedy_and_batches(tok, fake_vllm):
    r = ChatRenderer(tok, SCHEMAS, few_shot=False)
    llm = FakeLLM(tok, {"Question number": [r.format_call(ANSWER)]})
    policy = VLLMPolicy(VLLMSampler(colocated(llm)), tok, r)
    reqs = [RolloutRequest(scenario(i), i, 0) for i in range(5)]
    trajs = run_rollouts(policy, reqs, lambda sc: FakeEnv(sc), settings(greedy=True, batch_size=2))
    assert [len(p) for p, _, _ in llm.calls] == [2, 2, 1]
    assert all(p["temperature"] == 0.0 and p["top_p"] == 1.0 for _, ps, _ in llm.calls for p in ps)
    assert [t.scenario_id for t in trajs] == [f"s{i}" for i in range(5)]


class FakeClient:
    """TRL's VLLMClient surface used by the server back-end."""

    base_url = "http://vllm:8000"
    model = "base"

    def __init__(self):
        self.posts, self.generated = [], []

    def generate(self, prompts, **kw):
        self.generated.append((prompts, kw))
        return {"completion_ids": [[4, 6]], "logprobs": [[[-0.3], [-0.1, -0.9]]],
                "logprob_token_ids": [[[4], [8, 6]]]}

    def _post(self, url, json=None):
        self.posts.append((url, json))
        return {}


def test_server_backend_parses_and_hot_loads_adapters():
    from inboxrl.agent.vllm_engine import TurnRequest

    client = FakeClient()
    backend = ServerBackend(VLLMSettings(mode="server"), client=client)
    t = TurnRequest([1, 2, 3], 16, 11, 0.8, 1.0, False, (2,))
    assert backend.generate([t, t]) == [([4, 6], [-0.3, -0.9])] * 2
    prompts, kw = client.generated[0]
    assert prompts == [[1, 2, 3]] and kw["logprobs"] == 0 and kw["max_tokens"] == 16
    assert kw["generation_kwargs"] == {"model": "base", "seed": 11, "stop_token_ids": [2],
                                       "skip_special_tokens": False}
    backend.use_adapter("step_0003", 4, "/runs/a/step_0003")
    assert client.posts == [("http://vllm:8000/v1/load_lora_adapter",
                             {"lora_name": "step_0003", "lora_path": "/runs/a/step_0003"})]
    backend.generate([t])
    assert client.generated[-1][1]["generation_kwargs"]["model"] == "step_0003"


class RecordingBackend:
    def __init__(self):
        self.adapters, self.weights, self.woken = [], None, 0

    def use_adapter(self, name, int_id, path):
        self.adapters.append((name, int_id, path))

    def load_weights(self, named):
        self.weights = named

    def wake(self):
        self.woken += 1


def test_sync_pushes_a_new_adapter_per_step_or_the_full_weights(tmp_path, one_thread):
    from inboxrl.policy.loading import apply_lora, LoraSpec

    model, _ = make_tiny_model(seed=2)
    backend = RecordingBackend()
    sampler = VLLMSampler(backend, adapter_dir=tmp_path)
    sampler.sync(model, step=0)
    assert [n for n, _ in backend.weights] == [n for n, _ in model.named_parameters()]
    assert torch.equal(dict(backend.weights)["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    names = [n for n, _ in backend.weights]
    lora = apply_lora(model, LoraSpec(r=4, target_modules=["q_proj", "v_proj"]))
    sampler.start(lora, step=0)  # base weights under their checkpoint names, then the adapter
    assert [n for n, _ in backend.weights] == names
    for step in (1, 2):
        sampler.sync(lora, step=step)
    assert backend.adapters == [("step_0000", 1, str(tmp_path / "step_0000")),
                                ("step_0001", 2, str(tmp_path / "step_0001")),
                                ("step_0002", 3, str(tmp_path / "step_0002"))]
    assert (tmp_path / "step_0002" / "adapter_config.json").exists() and sampler.version == 3


def test_colocated_generate_and_adapter_request(tok, fake_vllm):
    from inboxrl.agent.vllm_engine import TurnRequest

    llm = FakeLLM(tok, {"x": ["hi"]})
    backend = colocated(llm)
    backend.use_adapter("step_0001", 2, "/a")
    params = sampling_params(fake_vllm.SamplingParams, TurnRequest([1], 5, 3, 0.7, 0.9, False, (2, 0)))
    assert params == dict(n=1, temperature=0.7, top_p=0.9, max_tokens=5, seed=3, logprobs=0,
                          stop_token_ids=[2, 0], skip_special_tokens=False, detokenize=False)
    prompt = tok.encode("x", add_special_tokens=False)
    (ids, lps), = backend.generate([TurnRequest(prompt, 5, 3, 0.7, 0.9, False, (2,))])
    assert ids == tok.encode("hi", add_special_tokens=False) and len(lps) == len(ids)
    assert llm.calls[0][2] == ("lora", "step_0001", 2, "/a")


def test_missing_vllm_is_one_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(EngineUnavailable, match=r"pip install 'inboxrl\[vllm\]'"):
        import_vllm()
    with pytest.raises(EngineUnavailable):
        ColocatedBackend("model", VLLMSettings(), 2048, 0, None)
    with pytest.raises(ValueError):
        VLLMSettings(mode="remote")


HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(not (HAVE_VLLM and torch.cuda.is_available()),
                    reason="needs vLLM and a CUDA GPU (pip install 'inboxrl[vllm]' on a GPU machine)")
def test_real_vllm_rollouts_on_a_tiny_model(tmp_path, tok):
    model, tok = make_tiny_model(seed=0)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    backend = ColocatedBackend(str(tmp_path / "m"), VLLMSettings(gpu_memory_utilization=0.2), 1024, 0, None)
    r = ChatRenderer(tok, SCHEMAS, few_shot=False)
    policy = VLLMPolicy(VLLMSampler(backend), tok, r)
    reqs = [RolloutRequest(scenario(i), i, 0) for i in range(3)]
    s = settings(max_new_tokens=12, max_turns=2, check_template=True)
    trajs = run_rollouts(policy, reqs, lambda sc: FakeEnv(sc, max_turns=2), s)
    again = run_rollouts(policy, reqs, lambda sc: FakeEnv(sc, max_turns=2), s)
    assert [t.token_ids for t in trajs] == [t.token_ids for t in again]  # seeded
    for t in trajs:
        assert t.num_model_tokens > 0 and all(lp <= 0 for lp, s_ in zip(t.logprobs, t.sources) if s_ == "model")
