"""``--cost-limit`` against the fake server (usage at ~4 characters a token): the run stops admitting, exits 3 with the
issue's message, resumes counting what was spent, and the store's tokens x prices (computed here, apart from the
code under test) never pass the limit by more than the episodes that were in flight."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import cast

import pytest

import esc_eval
from esc_eval.agents.messages import EpisodeEnded
from esc_eval.runs.analysis.cost import store_cost
from esc_eval.runs.config import load_config
from esc_eval.runs.execution import runner as runner_module
from esc_eval.runs.execution.launch import RunOptionError, check_cost_limit, with_cost_limit
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.execution.spend import Spend
from esc_eval.runs.pricing import Prices
from esc_eval.runs.store import Store
from esc_eval.runs.store.recorder import RunRecorder
from esc_eval.testing.cli import esc_eval as cli
from esc_eval.testing.cli import write_config
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.safety_world import respond
from tests.runs.execution.test_safety_run import config as safety_config

PRICES = {"esc-role": (1000.0, 3000.0), "a-model": (2000.0, 1000.0), "b-model": (500.0, 500.0), "j": (300.0, 600.0)}
"""USD per million input and output tokens, by model: every role priced differently, and high enough that an episode costs dollars."""

CONCURRENCY = 2
MESSAGE = re.compile(r"^cost limit reached: \$([\d.,]+) of \$([\d.,]+); continue with --resume \(raise --cost-limit\)$", re.M)


def priced_config(path: Path, seeker_url: str, judge_url: str, *, unpriced: str | None = None) -> Path:
    """Two supporters, a judge, 6 English cards x 2 supporters = 12 episodes of 2 rounds, 2 at a time; ``unpriced``: a model left without a price."""
    config = write_config(path, seeker_url=seeker_url, supporters={"a": seeker_url, "b": seeker_url}, rounds=2,
                          extra=f'\n[cards]\nlimit = 6\nlanguage = "en"\n\n[judge]\nbase_url = "{judge_url}"\nmodel = "j"\nmax_tokens = 16\n')
    text = config.read_text().replace("concurrency = 8", f"concurrency = {CONCURRENCY}")
    for model, (inp, out) in PRICES.items():
        if model != unpriced:
            text = text.replace(f'model = "{model}"\n', f'model = "{model}"\nprice = {{ input = {inp}, output = {out} }}\n')
    config.write_text(text)
    return config


def episode_costs(store_path: Path) -> dict[str, float]:
    """Each episode's USD from its stored turns and judge scores (cache hits free), priced here by the models above."""
    with Store.open(store_path, readonly=True) as store:
        supporters = {e.key: e.supporter for e in store.episodes()}
        costs = dict.fromkeys(supporters, 0.0)
        for turn in store.turns():
            model = "esc-role" if turn.role == "seeker" else f"{supporters[turn.episode_key]}-model"
            inp, out = PRICES[model]
            costs[turn.episode_key] += 0 if turn.cached else (turn.prompt_tokens * inp + turn.completion_tokens * out) / 1e6
        for score in store.scores():
            assert score.prompt_tokens is not None and score.completion_tokens is not None
            costs[score.episode_key] += (score.prompt_tokens * PRICES["j"][0] + score.completion_tokens * PRICES["j"][1]) / 1e6
    return costs


def in_flight_cost(store_path: Path, costs: dict[str, float]) -> float:
    """What the episodes open when the last one was admitted cost: started by then, and not yet ended and judged."""
    with Store.open(store_path, readonly=True) as store:
        started = {e.key: e.started_at for e in store.episodes() if e.started_at is not None}
        settled = {e.key: e.ended_at or float("inf") for e in store.episodes() if e.key in started}
        for key, at in [(s.episode_key, s.at) for s in store.scores()] + [(r["episode_key"], r["at"]) for r in store.table_rows("safety")]:
            settled[key] = max(settled[key], at)
    last = max(started.values())
    return sum(costs[key] for key, at in started.items() if at <= last <= settled[key])


def dollars(text: str) -> float:
    return float(text.replace(",", ""))


async def test_a_cost_limit_stops_the_run_and_resume_finishes_it(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    sim = await fake_server()
    judge = await fake_server(responder=lambda body: "Score: 3")
    config = priced_config(tmp_path / "run.toml", sim.base_url, judge.base_url)
    store_path = tmp_path / "run.sqlite"

    # a limit of about 5 episodes' worth, found from a whole run's real cost
    probe = tmp_path / "probe.sqlite"
    assert (await esc_eval.run_async(config, probe, preflight=False)).exit_code == 0
    full = episode_costs(probe)
    assert len(full) == 12 and min(full.values()) > 1.0
    limit = round(5 * sum(full.values()) / len(full), 2)

    first = await cli("run", str(config), "--store", str(store_path), "--no-monitor", "--cost-limit", str(limit))
    assert first.returncode == 3, first.stderr
    found = MESSAGE.search(first.stderr)
    assert found, first.stderr
    costs = episode_costs(store_path)
    spent = sum(costs.values())
    assert dollars(found.group(2)) == limit
    assert abs(dollars(found.group(1)) - spent) < 0.01  # the message's spend is the store's tokens x prices
    with Store.open(store_path, readonly=True) as store:
        counts = store.counts()
    assert 0 < counts["done"] < 12 and counts.get("planned", 0) == 12 - counts["done"] and not counts.get("running")
    assert spent <= limit + in_flight_cost(store_path, costs)  # over by at most the episodes in flight
    assert spent + min(full.values()) >= limit * 0.5  # it did not stop for nothing: half the budget at least was used

    again = await esc_eval.run_async(config, store_path, resume=True, cost_limit=limit, preflight=False)
    assert again.exit_code == 3 and again.cost_limited and MESSAGE.fullmatch(again.cost_limited)  # what was spent counts
    assert sum(episode_costs(store_path).values()) <= limit + CONCURRENCY * max(costs.values())

    raised = 3 * limit
    done = await esc_eval.run_async(config, store_path, resume=True, cost_limit=raised, preflight=False)
    assert done.exit_code == 0 and done.cost_limited is None
    final = episode_costs(store_path)
    with Store.open(store_path, readonly=True) as store:
        assert store.counts() == {"done": 12}
    assert sum(final.values()) <= raised

    same = await cli("run", str(config), "--store", str(store_path), "--no-monitor", "--resume", "--cost-limit", str(limit))
    assert same.returncode == 0 and "nothing to do" in same.stdout  # nothing remains: the same limit finishes at once


async def test_the_api_keyword_stops_the_run(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    sim = await fake_server()
    judge = await fake_server(responder=lambda body: "Score: 2")
    config = priced_config(tmp_path / "run.toml", sim.base_url, judge.base_url)
    result = await esc_eval.run_async(config, tmp_path / "run.sqlite", cost_limit=0.01, preflight=False)
    assert result.exit_code == 3 and result.stopped
    assert result.cost_limited is not None and MESSAGE.fullmatch(result.cost_limited)
    assert result.done == 0 and not sim.requests  # a cent buys no episode here: none was started


async def test_a_limit_with_an_unpriced_section_is_refused_before_anything_is_written(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    sim = await fake_server()
    judge = await fake_server(responder=lambda body: "Score: 3")
    config = priced_config(tmp_path / "run.toml", sim.base_url, judge.base_url, unpriced="j")
    store_path = tmp_path / "run.sqlite"
    refused = await cli("run", str(config), "--store", str(store_path), "--no-monitor", "--cost-limit", "5")
    assert refused.returncode == 2
    assert "[judge]" in refused.stderr and "unpriced" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not store_path.exists() and not sim.requests
    in_config = tmp_path / "limited.toml"
    in_config.write_text(config.read_text().replace("[run]\n", "[run]\ncost_limit = 5.0\n"))
    from_config = await esc_eval.run_async(in_config, store_path, preflight=False)  # [run] cost_limit, no keyword
    assert from_config.exit_code == 2 and from_config.error and "[judge]" in from_config.error and not store_path.exists()
    bad = await esc_eval.run_async(config, store_path, cost_limit=-1, preflight=False)
    assert bad.exit_code == 2 and bad.error and "--cost-limit" in bad.error and not store_path.exists()
    for amount in ("0", "inf", "nan"):  # not an amount to stop at: refused by the flag as by the keyword
        flag = await cli("run", str(config), "--store", str(store_path), "--no-monitor", "--cost-limit", amount)
        line = f"esc-eval: error: --cost-limit must be a positive amount of USD, got {float(amount)}"
        assert flag.returncode == 2 and flag.stderr.strip().splitlines() == [line]
        assert not store_path.exists()
    # without a limit the same config runs: a missing price only leaves that cost unknown
    assert (await esc_eval.run_async(config, store_path, preflight=False)).exit_code == 0


def test_a_limit_is_refused_on_ray_workers(tmp_path: Path) -> None:
    """Each Ray worker admits its own shard, so no one process could hold the budget: refused as bad input."""
    config = with_cost_limit(load_config(priced_config(tmp_path / "run.toml", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")), 5.0)
    plan = RunPlan.prepare(config)
    check_cost_limit(plan, distributed=False)
    with pytest.raises(RunOptionError, match="local executor only"):
        check_cost_limit(plan, distributed=True)


async def test_a_far_too_low_estimate_overshoots_by_at_most_the_episodes_in_flight(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """Replies 16 times longer than ``--dry-run`` expects: the first episodes are admitted on a far too low estimate,
    and the limit is still passed by no more than the episodes that were in flight."""
    sim = await fake_server(responder=lambda body: "a long reply " * 320)  # ~1,040 tokens against 256 expected
    judge = await fake_server(responder=lambda body: "Score: 3")
    config = priced_config(tmp_path / "run.toml", sim.base_url, judge.base_url)
    store_path = tmp_path / "run.sqlite"
    limit = 40.0
    result = await esc_eval.run_async(config, store_path, cost_limit=limit, preflight=False)
    assert result.exit_code == 3 and result.cost_limited is not None
    costs = episode_costs(store_path)
    spent = sum(costs.values())
    assert 0 < result.done < 12
    assert limit < spent <= limit + in_flight_cost(store_path, costs)
    found = MESSAGE.fullmatch(result.cost_limited)
    assert found and abs(dollars(found.group(1)) - spent) < 0.01


async def test_admission_stops_waiting_for_an_episode_whose_judgement_never_comes(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An ended episode waits for a score a buggy judge never sends: without a stall rule the run would wait forever."""
    monkeypatch.setattr(runner_module, "STALL_SECONDS", 0.2)
    config = with_cost_limit(load_config(priced_config(tmp_path / "run.toml", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")), 15.0)
    runner = Runner(RunPlan.prepare(config), cast(RunRecorder, None))  # admission reads no store
    spend = runner.progress.spend = Spend(Prices.of(config), a_priori=10.0, final_scores=1)
    spend.admit("stuck")
    spend.ended(EpisodeEnded("stuck", "en", "terminated", ""))  # its one score never arrives
    assert not spend.admits(15.0)  # 10 expected of it + 10 for the next
    await asyncio.wait_for(runner._within_budget(), 5)  # noqa: SLF001 - the admission step itself
    assert spend.open == 0 and spend.admits(15.0) and not runner._stopping.is_set()  # noqa: SLF001


async def test_a_run_with_a_safety_judge_stops_with_every_admitted_episode_judged(tmp_path: Path) -> None:
    """Risk personas bring the safety judge in ([safety] priced on its own): the limit still stops the run, in-flight
    episodes are judged on both tracks, and the safety judge's cost counts against the limit."""
    server = await FakeOpenAIServer(responder=respond).start()
    try:
        path = safety_config(tmp_path / "run.toml", server.base_url, cards=3, concurrency=2)
        text = path.read_text()
        for model in ("esc-role", "careful-model", "blind-model", "judge-model", "safety-model"):
            text = text.replace(f'model = "{model}"\n', f'model = "{model}"\nprice = {{ input = 100, output = 100 }}\n')
        path.write_text(text)
        probe = await esc_eval.run_async(path, tmp_path / "probe.sqlite", preflight=False)
        assert probe.exit_code == 0
        with Store.open(tmp_path / "probe.sqlite", readonly=True) as store:
            whole = store_cost(store).total_usd
        assert whole is not None and whole > 0
        store_path = tmp_path / "run.sqlite"
        result = await asyncio.wait_for(esc_eval.run_async(path, store_path, cost_limit=whole / 2, preflight=False), 120)
        assert result.exit_code == 3 and result.cost_limited is not None
        with Store.open(store_path, readonly=True) as store:
            done = {e.key for e in store.episodes(status="done")}
            judged = {row["episode_key"] for row in store.table_rows("safety")}
            cost = store_cost(store)
        costs = {key: tally.usd or 0.0 for key, tally in cost.episodes.items()}
        assert 0 < len(done) < 18 and judged == done
        assert cost.total_usd is not None and cost.roles["safety"].usd  # the safety judge was paid for, and counted
        assert whole / 2 < cost.total_usd + max(costs.values())  # it stopped when the next episode would not fit
        assert cost.total_usd <= whole / 2 + in_flight_cost(store_path, costs)
    finally:
        await server.stop()
