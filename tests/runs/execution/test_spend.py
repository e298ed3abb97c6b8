"""The live spend tracker: each request priced at its own endpoint's price, cache hits free, and an episode's cost
settling only once its judge and safety judge are done, so the expected cost an admission uses is the whole episode's."""

from __future__ import annotations

import pytest

from esc_eval.agents.messages import EpisodeEnded, TurnTaken
from esc_eval.runs.execution.spend import Spend
from esc_eval.runs.pricing import Price, Prices
from esc_eval.runs.store.records import PlannedEpisode, Tokens

PRICES = Prices(seekers={"": Price(1.0, 2.0)}, supporters={"a": Price(10.0, 20.0), "free": None},
                judge=Price(100.0, 200.0), safety=Price(1000.0, 0.0))


def planned(key: str, supporter: str = "a") -> PlannedEpisode:
    return PlannedEpisode(key, 0, 0, "c", "en", "x", "s", supporter, "default", 0, 1)


def spend(**options: object) -> Spend:
    keys = {"e1": planned("e1"), "e2": planned("e2"), "f": planned("f", "free")}
    return Spend(PRICES, keys, **options)  # type: ignore[arg-type]


def end(s: Spend, key: str, outcome: str, transcript: tuple[tuple[str, str], ...] = ()) -> None:
    s.ended(EpisodeEnded(key, "en", outcome, "", transcript))


def turn(key: str, role: str, prompt: int, completion: int, *, cached: bool = False) -> TurnTaken:
    return TurnTaken(key, 0, role, "text", prompt, completion, cached=cached)


def test_each_turn_is_priced_at_its_own_endpoint_and_cache_hits_cost_nothing() -> None:
    s = spend(prior=0.5)
    s.admit("e1")
    s.turn(turn("e1", "seeker", 1_000_000, 1_000_000))  # $1 + $2
    s.turn(turn("e1", "supporter", 100_000, 100_000))  # $1 + $2
    s.turn(turn("e1", "supporter", 100_000, 100_000, cached=True))
    assert s.spent == pytest.approx(6.0) and s.total == pytest.approx(6.5)
    assert s.saved == pytest.approx(3.0)
    s.turn(turn("f", "supporter", 10, 10))  # no price: unknown, never 0 in disguise
    s.judged("e1", Tokens(None, None))  # unknown tokens
    assert s.spent == pytest.approx(6.0) and s.saved == pytest.approx(3.0)


def test_an_episode_settles_when_its_final_scores_and_safety_judgements_are_in() -> None:
    s = spend(a_priori=50.0, final_scores=2, safety_samples=1)
    s.admit("e1")
    s.turn(turn("e1", "seeker", 1_000_000, 0))  # $1
    end(s, "e1", "terminated")
    assert s.settled == 0 and s.expected == 50.0  # the judge is still to come
    s.judged("e1", Tokens(10_000, 0))  # $1
    s.judged("e1", Tokens(10_000, 0))
    assert s.settled == 0
    s.safety("e1", Tokens(1_000, 0), excluded=False)  # $1
    assert s.settled == 1 and s.open == 0 and s.expected == pytest.approx(4.0)


def test_with_every_round_scored_an_episode_waits_for_each_rounds_scores() -> None:
    s = spend(final_scores=2, every_round=True)
    s.admit("e1")
    transcript = (("seeker", "1"), ("supporter", "1"), ("seeker", "2"), ("supporter", "2"), ("seeker", "3"))
    end(s, "e1", "truncated", transcript)  # two rounds closed before the end: 2 final scores + 2 x 2 per round
    for _ in range(5):
        s.judged("e1", Tokens(10_000, 0))
    assert s.settled == 0
    s.judged("e1", Tokens(10_000, 0))
    assert s.settled == 1 and s.expected == pytest.approx(6.0)


def test_failed_and_excluded_episodes_settle_without_the_judgements_they_never_get() -> None:
    s = spend(final_scores=7, safety_samples=3)
    s.admit("e1")
    s.admit("e2")
    s.turn(turn("e1", "seeker", 2_000_000, 0))
    end(s, "e1", "failed")
    assert s.settled == 1 and s.expected == pytest.approx(2.0)
    end(s, "e2", "truncated")
    for _ in range(7):
        s.judged("e2", Tokens(0, 0))
    assert s.settled == 1
    s.safety("e2", Tokens(None, None), excluded=True)  # one record, no request, nothing more to come
    assert s.settled == 2 and s.expected == pytest.approx(1.0)


def test_admission_counts_what_open_episodes_are_still_expected_to_cost() -> None:
    s = spend(a_priori=4.0, prior=1.0)
    settled: list[int] = []
    s.on_settle = lambda: settled.append(s.settled)
    assert s.committed() == 1.0 and s.admits(5.1) and not s.admits(5.0)  # 1 spent + 4 for the one to admit
    s.admit("e1")
    s.turn(turn("e1", "seeker", 1_000_000, 0))  # $1 of its expected $4 so far
    assert s.committed() == pytest.approx(1.0 + 1.0 + 3.0)
    assert s.admits(9.1) and not s.admits(9.0)
    s.turn(turn("e1", "seeker", 5_000_000, 0))  # past its expectation: what it spent counts, nothing more
    assert s.committed() == pytest.approx(7.0)
    end(s, "e1", "terminated")
    assert settled == [1] and s.expected == pytest.approx(6.0) and s.committed() == pytest.approx(7.0)
    assert s.projection(10) == pytest.approx(7.0 + 60.0)


def test_projection_is_unknown_without_an_estimate_or_a_settled_episode() -> None:
    s = spend()
    s.admit("e1")
    assert s.projection(5) is None
    end(s, "e1", "terminated")
    assert s.projection(5) == 0.0


def test_an_episode_that_never_ends_stops_counting_as_open() -> None:
    s = spend(a_priori=4.0)
    woken: list[bool] = []
    s.on_settle = lambda: woken.append(True)
    s.admit("e1")
    s.turn(turn("e1", "seeker", 1_000_000, 0))
    s.drop("e1")  # cancelled: admission must not wait for it, and its $1 is still spent
    assert s.open == 0 and woken == [True] and s.settled == 0 and s.spent == pytest.approx(1.0) and s.expected == 4.0
    s.drop("e1")
    assert woken == [True]
