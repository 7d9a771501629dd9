"""sample_next: greedy, seeded draws, top-p, temperature, and the recorded log-prob."""
import math

import torch

from inboxrl.agent.sampling import row_generator, sample_next

PROBS = [0.5, 0.3, 0.2]
LOGITS = torch.log(torch.tensor([PROBS]))


def draws(n, **kw):
    gens = [row_generator(0, 0, 0)]
    return [sample_next(LOGITS, gens, **kw)[0][0] for _ in range(n)]


def test_greedy_and_recorded_logprob():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    toks, lps = sample_next(logits, [], greedy=True)
    assert toks == [1, 0]
    expected = 2.0 - math.log(1 + math.exp(2) + math.exp(1))
    assert abs(lps[0] - expected) < 1e-6


def test_sampling_frequencies_match_the_distribution():
    counts = [0, 0, 0]
    for t in draws(3000):
        counts[t] += 1
    for c, p in zip(counts, PROBS):
        assert abs(c / 3000 - p) < 0.04


def test_top_p_keeps_the_nucleus_only():
    seen = set(draws(400, top_p=0.6))
    assert seen == {0, 1}
    assert set(draws(200, top_p=0.4)) == {0}


def test_temperature_changes_draws_and_recorded_logprob():
    gens = [row_generator(0, 0, 0)]
    toks, lps = zip(*[sample_next(LOGITS, gens, temperature=0.05) for _ in range(100)])
    assert {t[0] for t in toks} == {0}
    expected = torch.log_softmax(LOGITS.float() / 0.05, dim=-1)[0, 0].item()  # log pi_T, T = 0.05
    assert abs(lps[0][0] - expected) < 1e-5 and expected > math.log(0.5)
    tok1, lp1 = sample_next(LOGITS, gens, temperature=1.0)
    assert abs(lp1[0] - math.log(PROBS[tok1[0]])) < 1e-6  # T = 1: the raw distribution


def test_generators_are_per_rollout_and_seeded():
    a = [row_generator(1, 2, 3).initial_seed(), row_generator(1, 2, 3).initial_seed()]
    assert a[0] == a[1]
    assert row_generator(1, 2, 4).initial_seed() != a[0] and row_generator(2, 2, 3).initial_seed() != a[0]
    two = torch.cat([LOGITS, LOGITS])
    g1 = [row_generator(0, 0, 0), row_generator(0, 0, 1)]
    g2 = [row_generator(0, 0, 0), row_generator(0, 0, 1)]
    seq1 = [sample_next(two, g1)[0] for _ in range(20)]
    seq2 = [sample_next(two, g2)[0] for _ in range(20)]
    assert seq1 == seq2 and [r[0] for r in seq1] != [r[1] for r in seq1]
