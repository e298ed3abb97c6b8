"""The monitor's cost row: spend so far and the whole plan's projection, from a run's live counters and from its store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

import esc_eval
from esc_eval.agents.messages import EpisodeEnded, TurnTaken
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.execution.spend import Spend
from esc_eval.runs.monitor import LiveSource, StoreSource, render
from esc_eval.runs.monitor.render import PlainReporter
from esc_eval.runs.pricing import Price, Prices
from esc_eval.runs.store import PlannedEpisode, Store
from esc_eval.testing.cli import write_config


def text_of(snapshot: object) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(render(snapshot))  # type: ignore[arg-type]
    return console.export_text()


def test_the_live_view_shows_spend_and_projects_the_plan() -> None:
    planned = {k: PlannedEpisode(k, i, 0, "c", "en", "x", "s", "a", "default", 0, 1) for i, k in enumerate(("e1", "e2", "e3"))}
    progress = RunProgress(planned=10, skipped=2)
    progress.spend = Spend(Prices({"": Price(1.0, 1.0)}, {"a": Price(2.0, 2.0)}, None, None), planned, prior=4.0, a_priori=3.0, limit=30.0)
    source = LiveSource(progress)
    first = source.snapshot().cost
    assert first is not None and first.spent == 4.0 and first.projected == pytest.approx(4.0 + 8 * 3.0)  # a priori: $3 an episode
    for key in ("e1", "e2"):
        progress.active += 1
        progress.spend.admit(key)
    progress.turn(TurnTaken("e1", 0, "supporter", "hi", 500_000, 500_000))  # $2
    progress.active -= 1
    progress.ended(EpisodeEnded("e1", "en", "terminated", ""))  # settles: an episode is now expected at $2
    cost = source.snapshot().cost
    assert cost is not None and cost.spent == pytest.approx(6.0) and cost.limit == 30.0
    # spend, e2 (open, $0 so far) at $2, and 6 not yet admitted at $2 each
    assert cost.projected == pytest.approx(6.0 + 2.0 + 6 * 2.0)
    text = text_of(source.snapshot())
    assert "Cost" in text and "$6.00 spent · $20.00 projected for the plan · limit $30.00" in text
    assert "cost $6.00 spent" in PlainReporter().line(source.snapshot())


def test_without_prices_there_is_no_cost_row() -> None:
    progress = RunProgress(planned=1)
    progress.spend = Spend(Prices({"": None}, {}, None, None))
    snapshot = LiveSource(progress).snapshot()
    assert snapshot.cost is None and "Cost" not in text_of(snapshot)


async def test_monitoring_a_store_shows_what_it_spent_at_its_recorded_prices(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    sim = await fake_server()
    config = write_config(tmp_path / "run.toml", seeker_url=sim.base_url, supporters={"a": sim.base_url}, rounds=2,
                          extra='\n[cards]\nlimit = 3\nlanguage = "en"\n')
    config.write_text(config.read_text().replace('model = "esc-role"\n', 'model = "esc-role"\nprice = { input = 1.5, output = 2 }\n')
                      .replace('model = "a-model"\n', 'model = "a-model"\nprice = { input = 3, output = 7 }\n'))
    store_path = tmp_path / "run.sqlite"
    assert (await esc_eval.run_async(config, store_path, preflight=False, cost_limit=100.0)).exit_code == 0
    with Store.open(store_path, readonly=True) as store:
        expected = sum((t.prompt_tokens * 1.5 + t.completion_tokens * 2) / 1e6 if t.role == "seeker" else
                       (t.prompt_tokens * 3 + t.completion_tokens * 7) / 1e6 for t in store.turns())
    assert expected > 0
    source = StoreSource(store_path)
    try:
        cost = source.snapshot().cost
    finally:
        source.close()
    assert cost is not None and cost.spent == pytest.approx(expected) and cost.limit == 100.0
    assert cost.projected == pytest.approx(expected)  # every planned episode ended: the projection is what was spent


def test_a_run_whose_workers_admit_projects_its_spend_per_finished_episode() -> None:
    """A Ray driver admits nothing itself: the projection is this run's spend per finished episode times its episodes."""
    planned = {"e1": PlannedEpisode("e1", 0, 0, "c", "en", "x", "s", "a", "default", 0, 1)}
    progress = RunProgress(planned=5, skipped=1)
    progress.spend = Spend(Prices({"": None}, {"a": Price(2.0, 2.0)}, None, None), planned, prior=1.0)
    source = LiveSource(progress)
    first = source.snapshot().cost
    assert first is not None and first.projected is None  # nothing finished yet: no basis
    progress.turn(TurnTaken("e1", 0, "supporter", "hi", 500_000, 500_000))  # $2
    progress.ended(EpisodeEnded("e1", "en", "terminated", ""))
    cost = source.snapshot().cost
    assert cost is not None and cost.spent == pytest.approx(3.0) and cost.projected == pytest.approx(1.0 + 2.0 * 4)
