"""The distributed executor's pieces that need no Ray: limits, dealing, the worker's record sink, config."""

from __future__ import annotations

import pytest

from esc_eval.agents.messages import TurnTaken
from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.distributed import RecordSink, Rejudge, deal, split_limits
from esc_eval.runs.store.records import Unscored

RAW = {
    "run": {"concurrency": 64, "executor": "ray", "workers": 3},
    "seeker": {"base_url": "http://127.0.0.1:1/v1", "model": "m", "max_connections": 64},
    "supporters": [{"name": "a", "base_url": "http://127.0.0.1:1/v1", "model": "m", "max_connections": 2}],
    "judge": {"base_url": "http://127.0.0.1:1/v1", "model": "j", "max_connections": 16},
}


def test_split_limits_divides_and_keeps_at_least_one():
    config = parse_config(RAW)
    share = split_limits(config, 3)
    assert (share.run.concurrency, share.seeker.max_connections, share.supporters[0].max_connections,
            share.judge.max_connections) == (21, 21, 1, 5)
    assert share.fingerprint() == config.fingerprint()


def test_split_limits_divides_every_seeker_of_a_comparison():
    seekers = [{"name": name, "base_url": "http://127.0.0.1:1/v1", "model": name, "max_connections": limit}
               for name, limit in (("x", 64), ("y", 7))]
    config = parse_config({k: v for k, v in RAW.items() if k != "seeker"} | {"seekers": seekers})
    share = split_limits(config, 3)
    assert [s.max_connections for s in share.seeker_sections] == [21, 2] and share.seeker == share.seekers[0]
    assert share.fingerprint() == config.fingerprint()


def test_executor_fields_validated_and_outside_the_fingerprint():
    local = parse_config({**RAW, "run": {"concurrency": 64}})
    assert local.run.executor == "local" and local.fingerprint() == parse_config(RAW).fingerprint()
    with pytest.raises(ConfigError, match="'executor'"):
        parse_config({**RAW, "run": {"executor": "spark"}})
    with pytest.raises(ConfigError, match="'workers'"):
        parse_config({**RAW, "run": {"workers": 0}})


def test_deal_round_robin():
    assert deal(list(range(7)), 3) == [[0, 3, 6], [1, 4], [2, 5]]


def turn(key: str, index: int, role: str) -> TurnTaken:
    return TurnTaken(key, index, role, f"{role} {index}")


def score(sink: RecordSink, key: str, dimension: str, round_: int = -1) -> None:
    sink.add_score(key, dimension, 3, "Score: 3", "j", 0.1, round=round_)


def test_sink_completes_an_episode_when_every_score_is_in():
    sink = RecordSink(dimensions=2, score_every_round=True)
    sink.start_episode("k")
    for i, role in enumerate(["supporter", "seeker", "supporter", "seeker", "supporter"]):
        sink.add_turn(turn("k", i, role))
    sink.end_episode("k", "truncated", "max rounds", 1.0)
    for dim in ("a", "b"):
        score(sink, "k", dim)
    records, completed = sink.take()
    assert completed == [] and [r[0] for r in records][:2] == ["start", "turn"] and len(records) == 1 + 5 + 1 + 2
    score(sink, "k", "a", 1)  # round 1 closed before the end; round 2 closes at the end: the final scores are its
    score(sink, "k", "b", 1)
    records, completed = sink.take()
    assert completed == ["k"] and [r[0] for r in records] == ["score", "score"]
    sink.start_episode("f")
    sink.end_episode("f", "failed", "backend gave up", 2.0)
    assert sink.take()[1] == ["f"]


def test_sink_rejudge_rows_complete_when_scored():
    sink = RecordSink(dimensions=1, rejudge=[Rejudge("r", "en", "a", (("supporter", "hi"),))])
    assert sink.unscored(1) == [Unscored("r", "en", "a")]
    assert sink.transcript("r") == [("supporter", "hi")]
    score(sink, "r", "a")
    assert sink.take()[1] == ["r"]
