"""KVBatch: chunks of different lengths appended to any subset of slots, the shared prefix,
refilled and dropped slots all give the logits of an unpadded single-row forward."""
import pytest
import torch

from _rollout_util import one_thread  # noqa: F401
from inboxrl.agent.kv_batch import KVBatch, supported
from inboxrl.policy.hf import make_tiny_model


@pytest.fixture(scope="module")
def model(one_thread):
    return make_tiny_model(seed=3)[0]


def reference(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def run(kv, model, history, rows, chunks):
    logits = kv.forward(rows, chunks)
    for i, (r, c) in enumerate(zip(rows, chunks)):
        history[r] += c
        assert torch.allclose(logits[i], reference(model, history[r]), atol=1e-4), (rows, r)
    assert [kv.lengths[r] for r in rows] == [len(history[r]) for r in rows]


def test_subsets_and_different_lengths_match_single_rows(model):
    g = torch.Generator().manual_seed(0)
    streams = [torch.randint(5, 1000, (n,), generator=g).tolist() for n in (5, 9, 1)]
    kv = KVBatch(model, 3, pad_id=0, device=torch.device("cpu"))
    history = [[], [], []]
    with torch.no_grad():
        run(kv, model, history, [0, 1, 2], streams)            # right padding of shorter chunks
        run(kv, model, history, [1], [[3, 4, 5, 6, 7, 8, 9]])  # a prefill of one slot only
        run(kv, model, history, [0, 1, 2], [[11], [12], [13]])  # decode: one token per slot
        run(kv, model, history, [2, 0], [[14, 15], [16]])      # a subset, out of order
        run(kv, model, history, [0, 1, 2], [[17], [18], [19]])
        kv.keep([2, 0])  # drop slot 1, reorder
        history = [history[2], history[0]]
        run(kv, model, history, [0, 1], [[20], [21]])
        run(kv, model, history, [1], [[22, 23]])


def test_prefix_and_refilled_slot(model):
    prefix = list(range(20, 90))  # longer than the first buffer capacity (64): the buffers grow
    kv = KVBatch(model, 2, pad_id=0, device=torch.device("cpu"))
    with torch.no_grad():
        kv.set_prefix(prefix)
        assert kv.lengths == [0, 0] and kv.prefix_len == len(prefix)
        for s in (0, 1):
            kv.load_prefix(s)
        history = [list(prefix), list(prefix)]
        run(kv, model, history, [0, 1], [[91, 92, 93], [94]])
        run(kv, model, history, [0, 1], [[95], [96]])
        kv.reset(1)  # a new stream takes slot 1: its old columns are never seen
        history[1] = []
        run(kv, model, history, [1], [[5, 6]])
        run(kv, model, history, [0, 1], [[7], [8]])
        kv.reset(0)
        kv.load_prefix(0)
        history[0] = list(prefix)
        run(kv, model, history, [0, 1], [[9, 10], [11]])
    with pytest.raises(ValueError):
        kv.set_prefix(prefix)
    with pytest.raises(ValueError):
        kv.forward([0], [[]])


def test_only_full_attention_models():
    class Cfg:
        layer_types = ["full_attention", "sliding_attention"]

    class M:
        config = Cfg()

    assert "sliding_attention" in supported(M())
    with pytest.raises(ValueError, match="cannot cache"):
        KVBatch(M(), 1, 0, torch.device("cpu"))
    assert supported(make_tiny_model(seed=0)[0]) is None
