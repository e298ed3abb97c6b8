"""``esc-eval run --dry-run``: contacts nothing, writes nothing, bounds the real cost and, calibrated by a pilot, expects it within ±35 %."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from esc_eval.runs.config import load_config
from esc_eval.runs.execution.estimate import MESSAGE_TOKENS, Calibration, estimate
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.pricing import Price, Prices
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval, write_config

PRICES = {"seeker": (0.5, 1.5), "alpha": (2.5, 10.0), "beta": (1.0, 4.0), "judge": (0.2, 0.6)}
SEEKER_WORDS = "I have been feeling tired and worried about my work and my family lately".split()
SUPPORTER_WORDS = "That sounds really hard and I hear how much this weighs on you tell me more".split()


def _draw(body: dict[str, Any], low: int, high: int) -> int:
    """A length in [low, high] that the request decides, so a rerun of the same request gets the same reply."""
    digest = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()
    return low + int.from_bytes(digest[:4], "big") % (high - low + 1)


def responder(body: dict[str, Any]) -> str:
    """Replies of varied length, well under every ``max_tokens`` (and never breaking the seeker's role)."""
    model = body["model"]
    if model == "judge-model":
        return "Score: 3" + " because it helps" * _draw(body, 0, 3)
    words = SEEKER_WORDS if model == "esc-role" else SUPPORTER_WORDS
    count = _draw(body, 8, 60) if model != "beta-model" else _draw(body, 4, 20)
    return " ".join(words[i % len(words)] for i in range(count)) + "."


def config(path: Path, url: str, limit: int, *, priced: bool = True, seed: int = 0) -> Path:
    def price(name: str) -> str:
        return f"price = {{ input = {PRICES[name][0]}, output = {PRICES[name][1]} }}\n" if priced else ""

    written = write_config(path, seeker_url=url, supporters={"alpha": url, "beta": url}, rounds=3,
                           extra=f'\n[cards]\nlimit = {limit}\nlanguage = "en"\n\n[judge]\nbase_url = "{url}"\nmodel = "judge-model"\n'
                                 f"max_tokens = 64\n{price('judge')}")
    text = written.read_text()
    text = text.replace("[run]\n", f"[run]\nseed = {seed}\n")
    text = text.replace('model = "esc-role"\n', f'model = "esc-role"\n{price("seeker")}')
    for name in ("alpha", "beta"):
        text = text.replace(f'model = "{name}-model"\n', f'model = "{name}-model"\n{price(name)}')
    written.write_text(text)
    return written


def real_usage(store_path: Path, prices: Prices) -> dict[str, list[float]]:
    """Per role, ``[input tokens, output tokens, USD]`` from the usage the server reported, as the store holds it, times the prices."""
    found: dict[str, list[float]] = {}

    def add(role: str, price: Price | None, prompt: int, completion: int) -> None:
        assert price is not None
        row = found.setdefault(role, [0, 0, 0.0])
        row[0], row[1], row[2] = row[0] + prompt, row[1] + completion, row[2] + price.usd(prompt, completion)

    with Store.open(store_path, readonly=True) as store:
        supporter = {e.key: e.supporter for e in store.episodes()}
        for turn in store.turns():
            if turn.prompt_tokens:  # the fixed opener is no request
                price = prices.seeker("") if turn.role == "seeker" else prices.supporter(supporter[turn.episode_key])
                add(turn.role, price, turn.prompt_tokens, turn.completion_tokens)
        for table, role, price in (("scores", "judge", prices.judge), ("safety", "safety", prices.safety)):
            for row in store.table_rows(table):
                assert row["prompt_tokens"] is not None, f"the {role}'s usage is stored"
                add(role, price, row["prompt_tokens"], row["completion_tokens"])
    return found


def real_cost(store_path: Path, prices: Prices) -> float:
    return sum(row[2] for row in real_usage(store_path, prices).values())


async def dry_run(cfg: Path, *extra: str, cwd: Path) -> dict[str, Any]:
    result = await esc_eval("run", str(cfg), "--dry-run", "--format", "json", *extra, cwd=cwd)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


async def test_dry_run_sends_nothing_writes_nothing_and_gives_the_shape(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder)
    cfg = config(tmp_path / "run.toml", server.base_url, 3)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    data = await dry_run(cfg, cwd=tmp_path)
    assert server.requests == [] and server.answered == 0, "a dry run contacts no endpoint (not even the pre-flight)"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "a dry run writes no store and no file"
    assert {"episodes", "requests", "tokens", "cost_usd", "cost_usd_max"} <= set(data)
    assert data["episodes"] == 3 * 2
    roles = ("seeker", "supporter", "judge", "safety")
    assert set(data["requests"]) == set(roles) and all(set(data["tokens"][r]) == {"input", "output"} for r in roles)
    assert data["requests"]["supporter"] == data["requests"]["seeker"] == 6 * 3, "3 rounds: a seeker and a supporter request each"
    assert data["requests"]["judge"] == 6 * 7 and data["requests"]["safety"] == 0, "7 ESC-RANK dimensions per episode"
    assert data["requests_max"]["seeker"] == 6 * 3 * 3, "the bound asks every seeker turn again twice (role_break_retries)"
    assert 0 < data["cost_usd"] < data["cost_usd_max"]

    unpriced = await dry_run(config(tmp_path / "free.toml", server.base_url, 3, priced=False), cwd=tmp_path)
    assert unpriced["cost_usd"] is None and unpriced["cost_usd_max"] is None and unpriced["tokens"] == data["tokens"]
    import esc_eval as api

    assert api.estimate(cfg) == data, "esc_eval.estimate is the dry run's JSON"
    table = await esc_eval("run", str(cfg), "--dry-run", cwd=tmp_path)
    assert table.returncode == 0 and "nothing contacted" in table.stdout and "supporter" in table.stdout
    assert server.requests == []


async def test_bad_input_exits_2_as_a_run_does(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"},
                       cards=tmp_path / "missing.json")
    for args in (("--dry-run",), ("--format", "json"), ("--dry-run", "--calibrate", str(tmp_path / "no.sqlite"))):
        result = await esc_eval("run", str(cfg), *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert "missing.json" in (await esc_eval("run", str(cfg), "--dry-run", cwd=tmp_path)).stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


@pytest.mark.slow
async def test_the_bound_holds_and_a_pilot_calibrates_within_35_percent(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder)
    full, pilot = config(tmp_path / "full.toml", server.base_url, 15), config(tmp_path / "pilot.toml", server.base_url, 2)
    uncalibrated = await dry_run(full, cwd=tmp_path)
    assert server.answered == 0
    for cfg, store in ((pilot, "pilot.sqlite"), (full, "full.sqlite")):
        result = await esc_eval("run", str(cfg), "--store", str(tmp_path / store), "--no-monitor", cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr
    prices = Prices.of(load_config(full))
    real = real_cost(tmp_path / "full.sqlite", prices)
    assert real <= uncalibrated["cost_usd_max"], (real, uncalibrated["cost_usd_max"])

    requests_before = len(server.requests)
    calibrated = await dry_run(full, "--calibrate", str(tmp_path / "pilot.sqlite"), cwd=tmp_path)
    assert len(server.requests) == requests_before
    assert calibrated["cost_usd_max"] == uncalibrated["cost_usd_max"], "the bound needs no pilot"
    assert abs(calibrated["cost_usd"] - real) <= 0.35 * real, (calibrated["cost_usd"], real)

    itself = estimate(RunPlan.prepare(load_config(full)), Calibration.read(tmp_path / "full.sqlite")).cost_usd
    assert itself == pytest.approx(real, rel=1e-9), "a run calibrating its own plan expects exactly what it cost"

    # a pilot whose episodes the plan lacks (another seed) is compared per episode
    other = await esc_eval("run", str(config(tmp_path / "other.toml", server.base_url, 2, seed=7)), "--store",
                           str(tmp_path / "other.sqlite"), "--no-monitor", cwd=tmp_path, timeout=300)
    assert other.returncode == 0, other.stderr
    elsewhere = estimate(RunPlan.prepare(load_config(full)), Calibration.read(tmp_path / "other.sqlite"))
    assert elsewhere.cost_usd is not None and abs(elsewhere.cost_usd - real) <= 0.35 * real, (elsewhere.cost_usd, real)
    assert elsewhere.notes, "the estimate says the pilot's episodes were not in the plan"


def test_safety_requests_are_planned(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"}, rounds=2,
                       extra='\n[cards]\nlimit = 2\nlanguage = "en"\n\n[judge]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "j"\n'
                             "price = { input = 1, output = 2 }\n\n[safety]\nsamples = 3\ntemperature = 0.5\n")
    result = estimate(RunPlan.prepare(load_config(cfg)))
    data = result.to_json()
    assert data["requests"]["safety"] == 2 * 3 and data["tokens"]["safety"]["input"] > 0
    assert result.prices["safety", ""] == Price(1, 2), "the safety judge takes the judge's price"
    assert data["cost_usd"] is None, "the seeker and supporter have no price"
    assert data["by_role"]["safety"]["cost_usd"] is not None


@pytest.mark.slow
async def test_the_bound_is_tight_when_every_reply_is_at_max_tokens(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """Replies as long as ``max_tokens`` allows, personas and the safety judge: each role's real usage stays within the bound, and
    reaches it (less the chat-template allowance) but for the seeker's role-break retries, which a run without role breaks never takes."""
    server = await fake_server(responder=lambda body: "abc " * body["max_tokens"])  # max_tokens tokens at 4 characters or 1 word a token
    cfg = config(tmp_path / "run.toml", server.base_url, 3)
    cfg.write_text(cfg.read_text().replace('protocol = "default"\n', 'protocol = "default"\npersonas = ["default", "risk-active-plan"]\n'))
    bound = await dry_run(cfg, cwd=tmp_path)
    result = await esc_eval("run", str(cfg), "--store", str(tmp_path / "run.sqlite"), "--no-monitor", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    real = real_usage(tmp_path / "run.sqlite", Prices.of(load_config(cfg)))
    assert set(real) == {"seeker", "supporter", "judge", "safety"}
    for role, (used_in, used_out, usd) in real.items():
        most = bound["tokens_max"][role]
        assert used_in <= most["input"] and used_out <= most["output"] and usd <= bound["by_role"][role]["cost_usd_max"], (role, real, bound)
        share = 3 if role == "seeker" else 1  # 1 + role_break_retries attempts per seeker turn in the bound
        assert used_in * share >= 0.95 * most["input"] and used_out * share == most["output"], (role, real[role], most)
    assert real_cost(tmp_path / "run.sqlite", Prices.of(load_config(cfg))) <= bound["cost_usd_max"]


def test_a_local_tokenizer_counts_the_text(tmp_path: Path) -> None:
    """An endpoint whose model is a local tokenizer folder has its prompts counted with it, not at 4 characters a token."""
    from esc_eval.roles.loaders import builtin_cards
    from esc_eval.roles.templates import load_protocol
    from tests.agents.backends.test_usage import word_tokenizer

    folder = word_tokenizer(tmp_path / "tok")  # one token a word
    cfg = write_config(tmp_path / "run.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"}, rounds=1,
                       extra='\n[cards]\nlimit = 1\nlanguage = "en"\n')
    cfg.write_text(cfg.read_text().replace('model = "esc-role"', f'model = "{folder}"'))
    plan = RunPlan.prepare(load_config(cfg))
    seeker = estimate(plan).maximum["seeker", str(folder)]
    protocol, card = load_protocol("default"), builtin_cards("en")[0]
    attempt = len(protocol.seeker_prompt(card).split()) + len(protocol.opener("en").split()) + 2 * MESSAGE_TOKENS
    reminder = len(plan.role_break().reminder_for("en").split())  # the two retries' system prompts carry it
    assert (seeker.requests, seeker.input, seeker.output) == (3, 3 * attempt + 2 * reminder, 3 * 512)
