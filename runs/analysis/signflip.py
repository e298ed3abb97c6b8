"""The paired sign-flip test of card-level differences and the confidence interval that inverts it.

If supporters a and b are interchangeable, each card's difference d = a − b is as likely
negative as positive: flipping the signs of any set S of cards gives an equally likely table.
Flipping S changes the sum by −2·Σ_S(d − δ) when the differences are shifted by δ, so the
flipped table is at least as large as the observed one exactly when mean_S(d) ≤ δ. Hence

    p_greater(δ) = #{S : mean_S(d) ≤ δ} / T,   p_less(δ) = #{S : mean_S(d) ≥ δ} / T,

(the empty set, the observed table, counts in both), the two-sided p is
``min(1, 2·min(p_greater, p_less))`` (scipy's convention), and the 95% interval is every δ the
test does not reject: [k-th smallest subset mean, k-th largest] with k = ⌈α/2·T⌉ minus the
empty draws (Hartigan 1969). Interval and p come from the same counts, so the interval
excludes 0 exactly when p < α.

Up to ``EXACT_CARDS`` cards every one of the 2ⁿ sets is enumerated (T = 2ⁿ); beyond, S is
drawn at random (T = draws + 1) with enough draws that the smallest attainable p, 2/T, lies
below α / (tests in the family), so Holm can still reject. ``family`` runs one test per
column of a cards × tests table and shares the random draws between all columns: one matrix
product per batch of draws, whatever the number of pairs and dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
EXACT_CARDS = 20
"""Up to this many cards every sign pattern is enumerated (2²⁰ ≈ 10⁶ subset means)."""
BOUND = 100.0
"""Differences of values on the ×25 scale lie in [−100, 100]: an unbounded interval is clipped to it."""
_BATCH = 4096


@dataclass(frozen=True)
class SignFlip:
    """One test: the two-sided p-value, the inverted 95% interval, and how the p-value was found.

    ``floor`` is the smallest p-value this test could ever give (2/2ⁿ exact, 2/T Monte Carlo):
    ``p_value == floor`` with ``exact`` false means "p ≤ floor", not a probability.
    """

    p_value: float
    ci_low: float
    ci_high: float
    exact: bool
    floor: float


def draws_for(tests: int) -> int:
    """Monte Carlo sign patterns per test: the floor 2/(draws + 1) is at most 0.8 · α / tests, and never below 9,999 draws.

    Holm multiplies the smallest p by ``tests``: a pair whose data no draw matched still
    ends at 0.8 · α after adjustment, so it can be declared.
    """
    return max(9999, math.ceil(2.5 * max(1, tests) / ALPHA) - 1)


def smallest_p(n_cards: int, draws: int) -> float:
    """The smallest two-sided p the test can give with ``n_cards`` cards (exact up to ``EXACT_CARDS``)."""
    if n_cards < 1:
        return math.nan
    return min(1.0, 2 / 2 ** n_cards) if n_cards <= EXACT_CARDS else 2 / (draws + 1)


def _decide(means: np.ndarray, total: int, empty: int) -> tuple[float, float, float]:
    """p, low, high from the means of the non-empty flipped sets (``total`` sets in all, ``empty`` of them empty)."""
    means = np.round(means, 9)                     # exact ties at 0 despite float sums
    below = empty + int(np.count_nonzero(means <= 0))
    above = empty + int(np.count_nonzero(means >= 0))
    p = min(1.0, 2 * min(below, above) / total)
    k = math.ceil(round(ALPHA / 2 * total, 9)) - empty
    if k <= 0:
        return p, -BOUND, BOUND
    low = float(np.partition(means, k - 1)[k - 1])
    high = float(-np.partition(-means, k - 1)[k - 1])
    return p, max(-BOUND, low), min(BOUND, high)


def exact(d: np.ndarray) -> SignFlip:
    """The test over every one of the 2ⁿ sign patterns of ``d`` (n ≤ ``EXACT_CARDS``)."""
    d = np.asarray(d, dtype=float)
    sums, sizes = np.zeros(1), np.zeros(1)
    for x in d:                                     # all subset sums by doubling: 2ⁿ of them, empty set first
        sums, sizes = np.concatenate([sums, sums + x]), np.concatenate([sizes, sizes + 1])
    p, low, high = _decide(sums[1:] / sizes[1:], len(sums), 1)
    return SignFlip(p, low, high, True, smallest_p(len(d), 0))


def family(values: np.ndarray, pairs: Sequence[tuple[int, int]], *, draws: int, seed: int) -> list[SignFlip]:
    """One test per pair ``(a, b)`` of columns of ``values`` (cards × columns, ``nan`` where not played).

    Pair (a, b) tests ``values[:, a] − values[:, b]`` over the cards both have. Pairs with at
    most ``EXACT_CARDS`` shared cards are enumerated; the others share ``draws`` random sign
    patterns over all cards (seeded). A pair with fewer than two shared cards gets ``nan``.
    """
    table = np.asarray(values, dtype=float)
    present = ~np.isnan(table)
    out: list[SignFlip] = []
    big: list[int] = []
    nan = SignFlip(math.nan, math.nan, math.nan, True, math.nan)
    for index, (a, b) in enumerate(pairs):
        shared = present[:, a] & present[:, b]
        n = int(shared.sum())
        out.append(nan if n < 2 else exact(table[shared, a] - table[shared, b]) if n <= EXACT_CARDS else nan)
        if n > EXACT_CARDS:
            big.append(index)
    for index, found in zip(big, _monte_carlo(table, present, [pairs[i] for i in big], draws, seed)):
        out[index] = found
    return out


def _monte_carlo(table: np.ndarray, present: np.ndarray, pairs: Sequence[tuple[int, int]], draws: int,
                 seed: int) -> list[SignFlip]:
    """Random sign patterns for many pairs at once.

    The flipped sum of a pair is S·(x_a − x_b) = S·x_a − S·x_b when both supporters played
    the same cards, so one product per batch with the supporters' columns serves every pair
    (a pair whose cards differ gets its own difference column); the flipped counts are S·mask.
    """
    if not pairs:
        return []
    columns: dict[object, int] = {}
    blocks: list[np.ndarray] = []
    masks: dict[bytes, int] = {}
    mask_blocks: list[np.ndarray] = []
    plan = []                                   # per pair: (column of a or of a − b, column of b or -1, mask column)
    for a, b in pairs:
        shared = present[:, a] & present[:, b]
        key = np.packbits(shared).tobytes()
        if key not in masks:
            masks[key] = len(mask_blocks)
            mask_blocks.append(shared)
        if np.array_equal(shared, present[:, a]) and np.array_equal(shared, present[:, b]):
            for c in (a, b):
                if c not in columns:
                    columns[c] = len(blocks)
                    blocks.append(np.where(present[:, c], table[:, c], 0.0))
            plan.append((columns[a], columns[b], masks[key]))
        else:
            columns[(a, b)] = len(blocks)
            blocks.append(np.where(shared, table[:, a] - table[:, b], 0.0))
            plan.append((columns[(a, b)], -1, masks[key]))
    dtype, values, unit = _exact_dtype(np.column_stack(blocks))
    mask_matrix: np.ndarray = np.column_stack(mask_blocks).astype(dtype)
    first = np.array([p[0] for p in plan])
    second = np.array([max(0, p[1]) for p in plan])
    paired = np.array([p[1] >= 0 for p in plan])
    mask_of = np.array([p[2] for p in plan])
    cards, tests = table.shape[0], len(plan)
    total = draws + 1
    keep = math.ceil(round(ALPHA / 2 * total, 9))
    rng = np.random.default_rng(seed)
    below = np.zeros(tests, dtype=np.int64)
    above = np.zeros(tests, dtype=np.int64)
    empty = np.ones(tests, dtype=np.int64)               # the observed table
    means = np.empty((draws, tests), dtype=np.float32)   # one partition per column at the end
    width = (cards + 7) // 8 * 8
    values = np.vstack([values, np.zeros((width - cards, values.shape[1]), dtype=values.dtype)])
    mask_matrix = np.vstack([mask_matrix, np.zeros((width - cards, mask_matrix.shape[1]), dtype=mask_matrix.dtype)])
    all_paired, one_mask = bool(paired.all()), len(mask_blocks) == 1
    done = 0
    while done < draws:
        rows = min(_BATCH, draws - done)
        bits = np.unpackbits(np.frombuffer(rng.bytes(rows * width // 8), dtype=np.uint8)).reshape(rows, width)
        flips: np.ndarray = bits.astype(dtype)           # padding columns meet zero rows of ``values`` and the masks
        flipped = flips @ values
        sums = flipped[:, first] - (flipped[:, second] if all_paired else np.where(paired, flipped[:, second], 0))
        if dtype is np.float64:
            sums = np.round(sums, 6)                     # float sums: ties at 0 exact to a millionth of a point
        sizes = flips @ mask_matrix if one_mask else (flips @ mask_matrix)[:, mask_of]
        below += np.count_nonzero(sums <= 0, axis=0)
        above += np.count_nonzero(sums >= 0, axis=0)
        block = means[done:done + rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.multiply(sums, unit / sizes, out=block, casting="unsafe")
        if np.any(sizes == 0):                           # an empty flipped set is the observed table again
            none = np.broadcast_to(sizes == 0, sums.shape)
            empty += none.sum(axis=0)
            below -= none.sum(axis=0)
            above -= none.sum(axis=0)
            block[none] = np.nan
        done += rows
    k = keep - empty
    lows, highs = np.full(tests, -BOUND), np.full(tests, BOUND)
    if bool(np.all(empty == 1)) and keep - 1 > 0:        # the usual case: every column has all its draws
        ordered = np.partition(means, [keep - 2, draws - keep + 1], axis=0)
        lows, highs = ordered[keep - 2].astype(float), ordered[draws - keep + 1].astype(float)
    else:
        for j in range(tests):
            if k[j] <= 0:
                continue
            row = means[:, j][~np.isnan(means[:, j])]
            lows[j] = float(np.partition(row, k[j] - 1)[k[j] - 1])
            highs[j] = float(np.partition(row, len(row) - k[j])[len(row) - k[j]])
    return [SignFlip(min(1.0, 2 * min(int(below[j] + empty[j]), int(above[j] + empty[j])) / total),
                     max(-BOUND, round(float(lows[j]), 9)), min(BOUND, round(float(highs[j]), 9)), False, 2 / total)
            for j in range(tests)]


def _exact_dtype(values: np.ndarray) -> tuple[type, np.ndarray, float]:
    """float32 when every flipped sum is exact in float32, else float64: the dtype, the values to multiply, their unit.

    Values on a grid (25 points, or a fraction of it when cards hold several episodes or judge
    samples) are divided by the grid step, so float32 products of integers below 2²⁴ are exact:
    ties at 0 stay exact, at half the cost of float64 products.
    """
    for grid in _GRIDS:
        scaled = np.round(values / grid)
        if np.all(np.abs(values / grid - scaled) < 1e-9) and float(np.abs(scaled).sum(axis=0).max(initial=0)) < 2 ** 24:
            return np.float32, scaled.astype(np.float32), grid
    return np.float64, values, 1.0


_GRIDS = tuple(25 / q for q in (1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15, 16, 18, 20, 24, 30, 36, 48, 60, 72, 120))
"""Grid steps tried: 25 points divided by the usual numbers of episodes × judge samples behind a card's mean."""
