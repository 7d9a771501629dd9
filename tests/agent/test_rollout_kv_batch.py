"""KVBatch: left-padded chunks, holes, row drops and compaction give the logits of an unpadded
single-row forward."""
import pytest
import torch

from _rollout_util import one_thread  # noqa: F401
from inboxrl.agent.kv_batch import KVBatch
from inboxrl.policy.tiny import make_tiny_model


@pytest.fixture(scope="module")
def model(one_thread):
    return make_tiny_model(seed=3)[0]


def reference(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def test_padded_batch_matches_single_rows(model):
    g = torch.Generator().manual_seed(0)
    streams = [torch.randint(5, 1000, (n,), generator=g).tolist() for n in (5, 9, 1)]
    kv = KVBatch(model, 3, pad_id=0, device=torch.device("cpu"))
    history = [[], [], []]
    steps = [[s for s in streams],                       # different lengths: left padding
             [[7], [], [8, 9, 10]],                       # a hole row and a longer chunk
             [[11], [12, 13], [14]]]
    with torch.no_grad():
        for chunks in steps:
            logits = kv.forward(chunks)
            for r, c in enumerate(chunks):
                history[r] += c
                if c:
                    assert torch.allclose(logits[r], reference(model, history[r]), atol=1e-4)
        kv.select([2, 0])  # drop row 1, reorder
        history = [history[2], history[0]]
        width = kv.width
        kv.compact()
        assert kv.width < width  # the columns only row 1 used are gone
        logits = kv.forward([[15, 16], [17]])
        history[0] += [15, 16]
        history[1] += [17]
        for r in range(2):
            assert torch.allclose(logits[r], reference(model, history[r]), atol=1e-4)


def test_shared_prefix(model):
    prefix = list(range(20, 40))
    kv = KVBatch(model, 2, pad_id=0, device=torch.device("cpu"))
    with torch.no_grad():
        kv.prefill_shared(prefix)
        logits = kv.forward([[41, 42, 43], [44]])
    assert torch.allclose(logits[0], reference(model, prefix + [41, 42, 43]), atol=1e-4)
    assert torch.allclose(logits[1], reference(model, prefix + [44]), atol=1e-4)
    with pytest.raises(ValueError):
        kv.prefill_shared(prefix)
