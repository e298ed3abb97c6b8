"""Per-row sampling of the running batch: the draws follow the temperature and nucleus they were given, row by row."""

from __future__ import annotations

import math
from collections import Counter

import pytest

torch = pytest.importorskip("torch")

from esc_eval.agents.backends.decoding import NUCLEUS_CANDIDATES, RowSampler, next_tokens  # noqa: E402
from esc_eval.agents.messages import SamplingParams  # noqa: E402

DRAWS = 20_000


def frequencies(logits, params: SamplingParams) -> list[float]:
    sampler = RowSampler(params)
    counts = Counter(next_tokens(logits, [sampler])[0] for _ in range(DRAWS))
    return [counts[token] / DRAWS for token in range(logits.shape[-1])]


def close(observed: list[float], expected: list[float]) -> bool:
    """Within 5 binomial standard errors per token (a false alarm once in millions of runs)."""
    return all(abs(o - e) <= 5 * math.sqrt(max(e * (1 - e), 1e-12) / DRAWS) + 1e-9 for o, e in zip(observed, expected))


def test_draws_follow_temperature_and_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = torch.log(probs)
    assert close(frequencies(logits, SamplingParams(max_tokens=1, temperature=1.0, seed=1)), [0.5, 0.3, 0.15, 0.05])
    # top_p 0.7: 0.5 is before the cut, 0.5 + 0.3 reaches it: the nucleus is the first two, renormalised.
    assert close(frequencies(logits, SamplingParams(max_tokens=1, temperature=1.0, top_p=0.7, seed=2)), [0.625, 0.375, 0, 0])
    # temperature 0.5 squares the odds: 0.25 : 0.09 : 0.0225 : 0.0025.
    squared = [p * p for p in (0.5, 0.3, 0.15, 0.05)]
    assert close(frequencies(logits, SamplingParams(max_tokens=1, temperature=0.5, seed=3)), [p / sum(squared) for p in squared])


def test_a_flat_distribution_takes_its_nucleus_from_the_whole_vocabulary() -> None:
    """Twice as many equally likely tokens as candidates: top_p 0.9 must reach beyond the top candidates."""
    size = 2 * NUCLEUS_CANDIDATES
    frequencies_seen = frequencies(torch.zeros((1, size)), SamplingParams(max_tokens=1, temperature=1.0, top_p=0.9, seed=4))
    reached = sum(1 for f in frequencies_seen if f > 0)
    assert reached > NUCLEUS_CANDIDATES, f"only {reached} tokens drawn: the nucleus stopped at the candidates"


def test_greedy_rows_take_the_argmax_and_rows_do_not_disturb_each_other() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 1000) * 5
    params = SamplingParams(max_tokens=1, temperature=0.8, top_p=0.95, seed=9)
    alone = RowSampler(params).pick(logits[2])
    samplers = [RowSampler(SamplingParams(max_tokens=1)), RowSampler(SamplingParams(max_tokens=1, temperature=1.3, seed=1)),
                RowSampler(params), RowSampler(SamplingParams(max_tokens=1, temperature=0.5))]
    tokens = next_tokens(logits, samplers)
    assert tokens[0] == int(logits[0].argmax())
    assert tokens[2] == alone, "a seeded row draws the same token alone and among other rows"
    together = [next_tokens(logits, [RowSampler(params)])[0] for _ in range(3)]
    assert len(set(together)) == 1, "the same seed gives the same draw"
