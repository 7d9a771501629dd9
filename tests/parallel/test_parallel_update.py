"""Data-parallel GRPO update: 2 gloo processes give the 1-process update of the same groups,
with replicated parameters (DDP) and with sharded ones (FSDP2, ``--fsdp``)."""
import pytest
import torch

from _dist_util import spawn
from _dist_workers import CASES, case_trajectories, my_groups, one_rank_results, update_worker
from inboxrl.parallel import LOCAL, merge_shards, shard_range


def test_shard_range_blocks_hand_computed():
    assert [list(shard_range(5, r, 2)) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert [list(shard_range(7, r, 3)) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [list(shard_range(1, r, 3)) for r in range(3)] == [[0], [], []]
    assert merge_shards([["a", "b"], [], ["c"]]) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        shard_range(3, 2, 2)


def test_local_context_collectives_are_identity():
    assert not LOCAL.distributed and LOCAL.is_main
    assert LOCAL.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
    assert LOCAL.all_reduce_int([3, 4], op="max") == [3, 4]
    assert LOCAL.all_gather({"x": 1}) == [{"x": 1}] and LOCAL.broadcast(7) == 7


def test_cases_are_rank_imbalanced():
    trajs = case_trajectories("token_mean")
    tokens = [sum(t.model_mask().count(1) for t in my_groups(trajs, r, 2)) for r in range(2)]
    assert tokens[1] > 5 * tokens[0]
    idle = my_groups(case_trajectories("token_mean_idle_rank"), 1, 2)
    assert idle and not any(t.kept for t in idle)  # rank 1 has nothing to train: a dummy pass


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.fixture(scope="module", params=["ddp", "fsdp"])
def two_rank(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    spawn(update_worker, 2, str(out), request.param == "fsdp")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_rank():
    return one_rank_results()


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_equal_one_rank(two_rank, one_rank, case):
    one = one_rank[case]
    for rank in two_rank:  # both replicas end identical to each other and to the 1-rank update
        two = rank[case]
        s1, s2 = one["stats"], two["stats"]
        assert not s1["skipped"] and not s2["skipped"]
        for key in ("trainable_tokens", "total_tokens", "iterations"):
            assert s2[key] == s1[key], key
        for key in ("loss", "policy_loss", "grad_norm", "clip_fraction", "entropy"):
            assert s2[key] == pytest.approx(s1[key], rel=1e-6, abs=1e-9), key
        m1, m2 = s1["mismatch"], s2["mismatch"]  # sampler/trainer mismatch over the whole step
        assert m1.tokens > 0 and m2.tokens == m1.tokens
        for key in ("mismatch_kl", "max_logprob_gap"):
            assert getattr(m2, key) == pytest.approx(getattr(m1, key), rel=1e-6, abs=1e-9), key
        # a correlation from sums (Σxy − ΣxΣy/n) amplifies the float noise of the trainer forward
        # over other micro-batch rows (~1e-7) by its cancellation: a looser bound, still far below
        # what one rank's share of the tokens alone would give
        assert m2.probs_corr == pytest.approx(m1.probs_corr, rel=1e-4)
        moved = 0.0
        for name, p1 in one["after"].items():
            delta = p1 - one["before"][name]
            moved = max(moved, float(delta.abs().max()))
            assert _rel(two["after"][name], p1) <= 1e-6, name
        assert moved > 1e-4  # the update did something
    assert all(torch.equal(two_rank[0][case]["after"][k], two_rank[1][case]["after"][k])
               for k in two_rank[0][case]["after"])


def test_fsdp_shards_the_parameters(two_rank, one_rank, request):
    """DDP: every rank holds the whole model; FSDP: each holds a part, the parts add up to it."""
    total = sum(p.numel() for p in one_rank["token_mean"]["before"].values())
    local = [rank["token_mean"]["local_numel"] for rank in two_rank]
    if request.node.callspec.params["two_rank"] == "ddp":
        assert local == [total, total]
    else:
        assert sum(local) == total and max(local) < 0.6 * total


def test_collective_with_an_absent_peer_times_out(tmp_path):
    import json

    from _dist_workers import timeout_worker

    spawn(timeout_worker, 2, str(tmp_path))
    got = json.loads((tmp_path / "timeout.json").read_text())
    assert got["error"] is not None, "the all-reduce returned without its peer"
    assert got["elapsed"] < 6  # failed on the 2 s timeout, before the peer left at 6 s


def test_fsdp_rollouts_with_unequal_forwards_equal_one_rank(tmp_path):
    """Rank 0 runs twice the rollouts of rank 1 on the sharded model (rank-local forwards on the
    gathered weights, no collective per forward): nothing hangs, the trajectories are the
    one-rank ones, and so are the update between the two rounds and the second round."""
    from _dist_workers import rollout_case, rollout_worker

    spawn(rollout_worker, 2, str(tmp_path))
    two = [torch.load(tmp_path / f"rollouts{r}.pt", weights_only=False) for r in range(2)]
    one = rollout_case()
    assert two[0]["forwards"] > two[1]["forwards"] > 0  # unequal numbers of forwards per rank
    for rank in two:
        assert rank["loss"] == pytest.approx(one["loss"], rel=1e-6, abs=1e-9)
        assert rank["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-6)
        for key in ("first", "second"):
            assert [ids for ids, _ in rank[key]] == [ids for ids, _ in one[key]], key
            for (_, lp2), (_, lp1) in zip(rank[key], one[key]):
                assert lp2 == pytest.approx(lp1, abs=1e-5), key
    assert one["grad_norm"] > 0 and one["first"] != one["second"]
