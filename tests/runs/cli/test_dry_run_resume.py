"""``esc-eval run CONFIG --dry-run --resume``: the estimate of only the episodes a resume would play, read from the store
a real ``--resume`` finds, which stays byte for byte as it was; refused as a real resume refuses it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import esc_eval as api
from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.runs.config import ConfigError, load_config
from esc_eval.runs.execution.estimate import Calibration, Resumed, estimate
from esc_eval.runs.execution.launch import RunOptionError
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.resume import open_run_store
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store, StoreError
from esc_eval.testing.cli import esc_eval, write_config

URL = "http://127.0.0.1:9/v1"
STORE = Path("esc-eval-runs") / "test.sqlite"
"""Where ``esc-eval run`` writes without ``--store`` or ``[run] store`` (``launch.default_store``), under the test's folder."""


def supporter_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    if model == "b-model":
        raise ServerError("HTTP 500: supporter b is down")
    return "That sounds so hard; tell me more about it."


def judge_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    if model == "empathic-model":
        raise ServerError("HTTP 503: empathy adapter not loaded")
    return "Score: 3"


def make_config(folder: Path, rounds: int = 2) -> Path:
    """3 English cards x supporters a, b = 6 episodes of ``rounds`` rounds, priced, judged (one dimension on its own model)."""
    cfg = write_config(folder / "run.toml", seeker_url=URL, supporters={"a": URL, "b": URL}, rounds=rounds,
                       extra=f'\n[cards]\nlimit = 3\nlanguage = "en"\n\n[judge]\nbase_url = "{URL}"\nmodel = "j"\n'
                             'models = { empathic = "empathic-model" }\nprice = { input = 1, output = 2 }\n')
    text = cfg.read_text().replace('model = "esc-role"\n', 'model = "esc-role"\nprice = { input = 0.5, output = 1.5 }\n')
    for name in ("a", "b"):
        text = text.replace(f'model = "{name}-model"\n', f'model = "{name}-model"\nprice = {{ input = 2, output = 4 }}\n')
    cfg.write_text(text)
    return cfg


async def interrupted_store(cfg: Path, path: Path) -> dict[str, str]:
    """The store an interrupted attempt leaves: every episode planned, supporter a's three played (done, their empathy
    score failed), supporter b's first played and failed, its other two never started. Returns the statuses."""
    plan = RunPlan.prepare(load_config(cfg))
    pairs = list(plan.episodes())
    played = [(p, card) for p, card in pairs if p.supporter == "a"] + [next((p, card) for p, card in pairs if p.supporter == "b")]
    store = open_run_store(plan, path, resume=False).store
    store.plan(p for p, _ in pairs)
    backends = {"seeker": ScriptedBackend(model="esc-role"), "a": ScriptedBackend(supporter_script, model="a-model"),
                "b": ScriptedBackend(supporter_script, model="b-model"), "judge": ScriptedBackend(judge_script, model="j")}
    result = await Runner(plan, store, backends=backends, episodes=played).run()
    assert (result.progress.done, result.progress.failed) == (3, 1)
    with Store.open(path, readonly=True) as reader:
        statuses = reader.statuses()
    assert sorted(statuses.values()) == ["done"] * 3 + ["failed"] + ["planned"] * 2
    return statuses


def paper(cfg: Path, statuses: dict[str, str], played: set[str]) -> dict[str, Any]:
    """The whole-plan estimate of just the episodes whose stored status is in ``played``: what a resume plays."""
    plan = RunPlan.prepare(load_config(cfg))
    everything = list(plan.episodes())
    plan.episodes = lambda: iter([(p, card) for p, card in everything if statuses[p.key] in played])  # type: ignore[method-assign]
    return estimate(plan).to_json()


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


async def dry_json(cfg: Path, *extra: str, cwd: Path) -> dict[str, Any]:
    result = await esc_eval("run", str(cfg), "--dry-run", "--format", "json", *extra, cwd=cwd)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


FIGURES = ("episodes", "requests", "tokens", "cost_usd", "cost_usd_max", "requests_max", "tokens_max", "by_role")


async def test_a_resumed_dry_run_estimates_only_what_is_left_and_writes_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    statuses = await interrupted_store(cfg, tmp_path / STORE)
    before = fingerprint(tmp_path)

    whole = await dry_json(cfg, cwd=tmp_path)
    assert whole["episodes"] == 6 and "already_done" not in whole and "resumed_from" not in whole, "without --resume nothing changes"
    assert {**whole, "notes": []} == paper(cfg, statuses, {"done", "failed", "planned"})
    assert whole["notes"] == [f"a run would refuse its store: {STORE}: store already exists; pass --resume to continue it or "
                              "choose another --store (with --dry-run --resume: the estimate of what a resume plays)"]
    elsewhere = await dry_json(cfg, "--store", str(tmp_path / "new.sqlite"), cwd=tmp_path)
    assert elsewhere == {**whole, "notes": []}, "a store a run would create: the same figures, nothing to note"

    left = await dry_json(cfg, "--resume", cwd=tmp_path)  # the config's default store, as a real --resume finds it
    assert (left["episodes"], left["already_done"], left["failed_left_out"]) == (2, 3, 1)
    assert left["resumed_from"] == str(STORE)
    only_planned = paper(cfg, statuses, {"planned"})
    assert {k: left[k] for k in FIGURES} == {k: only_planned[k] for k in FIGURES}, "the estimate of the two planned episodes"
    assert left["requests"]["supporter"] == 2 * 2 and left["requests"]["judge"] == 2 * 7
    assert left["rescoring"] == 0, "a failed score is judged again only with --retry-failed"
    assert 0 < left["cost_usd"] < whole["cost_usd"]

    retried = await dry_json(cfg, "--resume", "--store", str(tmp_path / STORE), "--retry-failed", cwd=tmp_path)
    assert (retried["episodes"], retried["already_done"], retried["failed_left_out"]) == (3, 3, 0)
    with_failed = paper(cfg, statuses, {"planned", "failed"})
    assert {k: retried[k] for k in FIGURES} == {k: with_failed[k] for k in FIGURES}
    assert retried["rescoring"] == 3, "the done episodes' failed empathy scores"

    table = await esc_eval("run", str(cfg), "--dry-run", "--resume", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert f"episodes: 2 left to play in {STORE} (3 planned episodes already done, 1 failed left out" in table.stdout, table.stdout
    whole_table = (await esc_eval("run", str(cfg), "--dry-run", "--store", str(tmp_path / STORE), cwd=tmp_path)).stdout
    assert "episodes: 6\n" in whole_table and f"note: a run would refuse its store: {tmp_path / STORE}: store already exists" in whole_table

    assert api.estimate(cfg, resume=tmp_path / STORE) == {**left, "resumed_from": str(tmp_path / STORE)}
    assert api.estimate(cfg, resume=tmp_path / STORE, retry_failed=True)["episodes"] == 3
    plan = RunPlan.prepare(load_config(cfg))  # the store calibrates its own resume: the done episodes it leaves out match the plan's
    own = estimate(plan, Calibration.read(tmp_path / STORE), Resumed.read(plan, tmp_path / STORE))
    assert own.episodes == 2 and own.calibrated == str(tmp_path / STORE) and own.notes == [], own.notes
    assert fingerprint(tmp_path) == before, "the store is read, never written (no journal beside it either)"


async def test_a_resumed_dry_run_is_refused_as_a_resume_is(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    missing = ("--store", str(tmp_path / "missing.sqlite"), "--resume")
    dry, real = (await esc_eval("run", str(cfg), "--dry-run", *missing, cwd=tmp_path),
                 await esc_eval("run", str(cfg), "--no-preflight", "--no-monitor", *missing, cwd=tmp_path))
    assert dry.returncode == real.returncode == 2 and dry.stderr == real.stderr and "missing.sqlite" in dry.stderr, (dry, real)

    flag = await esc_eval("run", str(cfg), "--dry-run", "--retry-failed", cwd=tmp_path)
    assert flag.returncode == 2 and "--retry-failed needs --resume" in flag.stderr

    await interrupted_store(cfg, tmp_path / STORE)
    (tmp_path / "changed").mkdir()
    changed = make_config(tmp_path / "changed", rounds=3)
    before = fingerprint(tmp_path)
    refused = await esc_eval("run", str(changed), "--dry-run", "--store", str(tmp_path / STORE), "--resume", cwd=tmp_path)
    assert refused.returncode == 2 and "differs from the config" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    allowed = await dry_json(changed, "--store", str(tmp_path / STORE), "--resume", "--allow-config-change", cwd=tmp_path)
    assert allowed["episodes"] + allowed["already_done"] + allowed["failed_left_out"] == 6
    assert fingerprint(tmp_path) == before

    with pytest.raises(ConfigError, match="differs from the config"):
        api.estimate(changed, resume=tmp_path / STORE)
    with pytest.raises(StoreError, match="no such store"):
        api.estimate(cfg, resume=tmp_path / "missing.sqlite")
    with pytest.raises(RunOptionError, match="needs --resume"):
        api.estimate(cfg, retry_failed=True)
