"""The report's costs after a real run on the fake server (which reports ``usage``) equal tokens × prices computed
apart from the report, from the JSONL export (``esc-eval export``); a resume's new prices apply to the whole store."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from esc_eval import report, run_async
from esc_eval.testing.cli import esc_eval, write_config
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.scenarios import write_cards

PRICES = {"seeker": (0.2, 0.6), "a": (3.0, 15.0), "b": (0.5, 1.5), "judge": (1.0, 2.0), "safety": (0.1, 0.3)}


def write(path: Path, url: str, prices: Mapping[str, tuple[float, float] | None]) -> Path:
    def price(name: str) -> str:
        found = prices.get(name)
        return f"price = {{ input = {found[0]}, output = {found[1]} }}\n" if found else ""

    extra = (f'[judge]\nbase_url = "{url}"\nmodel = "judge-model"\n{price("judge")}\n'
             f'[safety]\nmodel = "safety-model"\n{price("safety")}')
    write_config(path, seeker_url=url, supporters={"a": url, "b": url}, cards=write_cards(path.parent / "cards.jsonl", 3),
                 rounds=2, extra=extra)
    text = path.read_text(encoding="utf-8")
    for name in ("a", "b"):   # each supporter's price inside its own table
        text = text.replace(f'model = "{name}-model"\n', f'model = "{name}-model"\n{price(name)}')
    text = text.replace('model = "esc-role"\n', f'model = "esc-role"\n{price("seeker")}', 1)
    path.write_text(text, encoding="utf-8")
    return path


def expected(export: Path, prices: Mapping[str, tuple[float, float] | None]) -> dict[str, Any]:
    """The cost object computed from the export's rows alone (an unknown price or token count: ``None``)."""
    tokens: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    paid: dict[str, float | None] = defaultdict(float)
    own: dict[str, float | None] = {}
    saved: float | None = 0.0

    def money(who: str, tokens_in: int | None, tokens_out: int | None) -> float | None:
        price = prices.get(who)
        return None if price is None or tokens_in is None or tokens_out is None else (tokens_in * price[0] + tokens_out * price[1]) / 1e6

    def plus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a + b

    lines = export.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        episode = json.loads(line)
        own.setdefault(episode["supporter"], 0.0)
        requests = [(t["role"], t) for t in episode["turns"]] + [("judge", s) for s in episode["scores"] if s["status"] != "failed"]
        requests += [("safety", j) for j in episode.get("safety", []) if j["status"] not in ("failed", "excluded")]
        for role, row in requests:
            who = episode["supporter"] if role == "supporter" else role
            usd = money(who, row["prompt_tokens"], row["completion_tokens"])
            if row["cached"]:
                saved = plus(saved, usd)
                continue
            tokens[role][0] += row["prompt_tokens"] or 0
            tokens[role][1] += row["completion_tokens"] or 0
            paid[role] = plus(paid[role], usd)
            if role == "supporter":
                own[episode["supporter"]] = plus(own[episode["supporter"]], usd)
    total: float | None = 0.0
    for role in ("seeker", "supporter", "judge", "safety"):
        total = plus(total, paid[role])
    return {"total_usd": total, "by_role": {r: paid[r] for r in ("seeker", "supporter", "judge", "safety")}, "by_supporter": own,
            "tokens": {r: {"input": tokens[r][0], "output": tokens[r][1]} for r in ("seeker", "supporter", "judge", "safety")},
            "cached_usd_saved": saved}


def approx(data: dict[str, Any]) -> Any:
    return {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else approx(v) if isinstance(v, dict) else v
            for k, v in data.items()}


async def test_report_costs_equal_the_exports_tokens_times_prices_and_a_resume_reprices_the_store(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as server:
        config = write(tmp_path / "run.toml", server.base_url, PRICES)
        store = tmp_path / "run.sqlite"
        result = await run_async(config, store, preflight=False)
        assert result.exit_code == 0, result.error
        exported = await esc_eval("export", str(store), "--format", "jsonl", "--out", str(tmp_path / "out"))
        assert exported.returncode == 0, exported.stderr
        export = tmp_path / "out" / "episodes.jsonl"
        want = expected(export, PRICES)
        cost = report(store)["cost"]
        assert list(cost) == ["total_usd", "by_role", "by_supporter", "tokens", "cached_usd_saved", "estimated"]
        assert {k: v for k, v in cost.items() if k != "estimated"} == approx(want)
        assert cost["estimated"] is False                         # the fake server reported every request's usage
        assert all(cost["tokens"][role]["input"] > 0 and cost["tokens"][role]["output"] > 0 for role in cost["tokens"])
        assert cost["cached_usd_saved"] == 0 and cost["total_usd"] > 0

        # prices are outside the fingerprint: the resume runs, records them, and the report prices every request with them
        repriced: dict[str, tuple[float, float] | None] = {**PRICES, "a": (30.0, 150.0), "b": None}
        resumed = await run_async(write(config, server.base_url, repriced), store, resume=True, preflight=False)
        assert resumed.exit_code == 0, resumed.error
        again = report(store)
        assert again["cost"]["by_supporter"]["a"] == pytest.approx(10 * want["by_supporter"]["a"], rel=1e-12)
        assert again["cost"]["by_supporter"]["b"] is None and again["cost"]["by_role"]["supporter"] is None
        assert again["cost"]["total_usd"] is None and again["cost"]["by_role"]["judge"] == pytest.approx(want["by_role"]["judge"])
        rows = {row["group"]["supporter"]: row["cost"] for row in again["rows"]}
        assert rows["a"]["supporter_usd"] == pytest.approx(10 * want["by_supporter"]["a"]) and rows["b"]["supporter_usd"] is None


async def test_cache_hits_cost_nothing_and_count_in_cached_usd_saved(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as server:
        config = write(tmp_path / "run.toml", server.base_url, PRICES)
        cache = tmp_path / "cache.sqlite"
        assert (await run_async(config, tmp_path / "one.sqlite", preflight=False, cache=cache)).exit_code == 0
        sent = len(server.requests)
        assert (await run_async(config, tmp_path / "two.sqlite", preflight=False, cache=cache)).exit_code == 0
        assert len(server.requests) == sent                          # every request of the rerun was a cache hit
        exported = await esc_eval("export", str(tmp_path / "two.sqlite"), "--format", "jsonl", "--out", str(tmp_path / "out"))
        assert exported.returncode == 0, exported.stderr
    first, rerun = report(tmp_path / "one.sqlite")["cost"], report(tmp_path / "two.sqlite")["cost"]
    assert {k: v for k, v in rerun.items() if k != "estimated"} == approx(expected(tmp_path / "out" / "episodes.jsonl", PRICES))
    assert rerun["total_usd"] == 0 and all(t == {"input": 0, "output": 0} for t in rerun["tokens"].values())
    # what the rerun saved is what the first run paid plus what it already took from the cache itself
    assert rerun["cached_usd_saved"] == pytest.approx(first["total_usd"] + first["cached_usd_saved"], rel=1e-12)
    assert first["total_usd"] > 0
