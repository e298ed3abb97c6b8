"""A store's tokens per episode, role, cache state and usage kind: what the report prices and a pilot calibrates from."""

from __future__ import annotations

from pathlib import Path

from esc_eval.runs.store import Store
from esc_eval.runs.store.usage import usage
from tests.runs.analysis.test_cost import make


def test_requests_count_the_answered_requests_with_known_tokens(tmp_path: Path) -> None:
    with Store.open(make(tmp_path, unknown_judge=True), readonly=True) as store:
        rows = {(u.episode_key, u.role, u.cached, u.estimated): u for u in usage(store)}
    got = {key: (u.requests, u.input, u.output, u.unknown) for key, u in rows.items()}
    assert got[("a0", "seeker", False, False)] == (1, 100, 10, 0)
    assert got[("a0", "seeker", True, False)] == (1, 50, 5, 0)           # a hit carries what the request cost
    assert got[("a0", "supporter", False, False)] == (1, 300, 30, 0)     # the opener (0 tokens) is no request
    assert got[("a0", "supporter", False, True)] == (1, 200, 20, 0)
    assert got[("a0", "judge", False, False)] == (1, 1000, 4, 0)         # the failed call answered nothing
    assert got[("a0", "judge", True, False)] == (1, 1000, 4, 0)
    assert got[("a0", "safety", False, False)] == (1, 500, 50, 0)
    assert got[("b0", "judge", False, False)] == (0, 0, 0, 1)            # tokens unknown: counted apart, never 0 tokens
    assert got[("b0", "safety", False, False)] == (0, 0, 0, 0)           # excluded: nothing sent
    assert {u.seeker for u in rows.values()} == {"esc-role"} and rows[("b0", "supporter", False, False)].supporter == "b"
