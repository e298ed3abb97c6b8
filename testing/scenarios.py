"""Reliability scenarios shared by the tests and by ``tests/reliability/table.py``.

Each scenario runs the real ``esc-eval`` command in a subprocess against fake
OpenAI-compatible servers served on the caller's event loop, then audits the store
with ``audit_store``: every planned episode present exactly once, finished as
``done`` (complete transcript, every judge dimension scored once) or ``failed``
(with its reason), nothing duplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.testing.cli import ROOT, Completed, esc_eval
from esc_eval.testing.fake_server import CLIENT_FAULT_KIND, FakeOpenAIServer

JUDGE_MODEL = "judge-model"
DIMENSIONS = 7
FAULT_KINDS = ("500", "503", "429", "429-retry-after", "slow", "reset", "garbage", "truncated", "empty", "no-choices")


class ChainResponder:
    """Replies that are unique per request and remember the history they answered.

    Every reply carries a serial number, so a turn produced by a crashed attempt differs
    from the one its restart produces; ``said[reply]`` is the conversation (non-system
    message texts) the reply answered, so ``audit_store`` can check that each stored turn
    answers exactly the turns stored before it: one coherent dialogue, not a splice of
    two attempts. Judge requests get a parseable score.
    """

    def __init__(self) -> None:
        self.serial = 0
        self.said: dict[str, tuple[str, ...]] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        if body.get("model") == JUDGE_MODEL:
            return "Score: 3"
        self.serial += 1
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]
        text = f"{body.get('model')} says {digest} #{self.serial}"
        self.said[text] = tuple(m["content"] for m in body.get("messages", []) if m.get("role") != "system")
        return text


def write_cards(path: Path, count: int, *, language: str = "en", profile: str | None = None) -> Path:
    """``count`` valid cards in our JSONL shape (ids ``c00000``...)."""
    lines = []
    for i in range(count):
        text = profile if profile is not None else f"Age: {20 + i % 50}. Problem: worry number {i} keeps me awake."
        lines.append(json.dumps({"id": f"c{i:05d}", "language": language, "profile": text,
                                 "category": "work_study", "source": "reliability"}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def write_run_config(path: Path, *, run: dict[str, Any], cards: dict[str, Any], seeker: dict[str, Any],
                     supporters: Iterable[dict[str, Any]], judge: dict[str, Any] | None = None) -> Path:
    """A TOML config from plain dicts (sections in the documented order)."""
    lines: list[str] = []

    def table(header: str, values: dict[str, Any]) -> None:
        lines.append(header)
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")

    table("[run]", run)
    table("[cards]", cards)
    table("[seeker]", seeker)
    for supporter in supporters:
        table("[[supporters]]", supporter)
    if judge is not None:
        table("[judge]", judge)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- auditing a store ---------------------------------------------------------------


@dataclass
class Audit:
    """What a store holds after a run, against what was planned."""

    planned: int = 0
    done: int = 0
    failed: int = 0
    lost: int = 0
    """Planned episodes missing from the store or not finished (planned/running)."""
    duplicates: int = 0
    """Turns or scores beyond one per (episode, index) / (episode, dimension, round), and texts stored twice."""
    problems: list[str] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    """``kind`` -> rows in the events table."""
    events_by_endpoint: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: int = 0
    failed_reasons: list[str] = field(default_factory=list)
    score_status: Counter[str] = field(default_factory=Counter)
    """Final and per-round score rows by status (``ok``; ``failed`` when the judge gave up)."""

    def fault_events(self, prefix: str = "") -> Counter[str]:
        """``retry:``/``fault:`` events by client fault kind (``5xx``, ``429``, ...)."""
        out: Counter[str] = Counter()
        for kind, n in self.events.items():
            if kind.startswith(("retry:", "fault:")) and kind.startswith(prefix):
                out[kind.split(":", 1)[1]] += n
        return out

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicates == 0


def audit_store(path: Path, planned_keys: Iterable[str], *, rounds: int, dimensions: int = 0,
                unique_texts: bool = True, said: Mapping[str, tuple[str, ...]] | None = None) -> Audit:
    """Check every invariant a run must keep, whatever happened to it.

    Args:
        planned_keys: the keys the config plans (``RunPlan.prepare(config).episodes()``).
        rounds: a ``done`` episode must have exactly ``1 + 2*rounds`` turns, indexes 0.. contiguous.
        dimensions: final scores each ``done`` episode must have (0: no judge).
        unique_texts: generated turns must be globally distinct (``ChainResponder``).
        said: ``ChainResponder.said``: each generated turn must answer exactly the turns before it.
    """
    planned = list(planned_keys)
    audit = Audit(planned=len(planned))
    if len(set(planned)) != len(planned):
        audit.problems.append("the plan itself repeats keys")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            audit.problems.append(f"integrity_check: {check}")
        episodes = {row[0]: row for row in conn.execute("SELECT key, status, outcome, reason, attempts FROM episodes")}
        turns: dict[str, list[tuple[int, str, str]]] = {}
        for key, idx, role, text in conn.execute("SELECT episode_key, idx, role, text FROM turns ORDER BY episode_key, idx"):
            turns.setdefault(key, []).append((idx, role, text))
        scores: Counter[tuple[str, str, int]] = Counter()
        score_status: Counter[str] = Counter()
        for key, dim, rnd, status in conn.execute("SELECT episode_key, dimension, round, status FROM scores"):
            scores[(key, dim, rnd)] += 1
            score_status[status] += 1
        for kind, endpoint, n in conn.execute("SELECT kind, COALESCE(endpoint, ''), COUNT(*) FROM events GROUP BY kind, endpoint"):
            audit.events[kind] += n
            audit.events_by_endpoint[(endpoint, kind)] += n
    finally:
        conn.close()

    extra = set(episodes) - set(planned)
    if extra:
        audit.problems.append(f"{len(extra)} episodes in the store were never planned, e.g. {sorted(extra)[0]}")
    expected_turns = 1 + 2 * rounds
    for key in planned:
        row = episodes.get(key)
        if row is None or row[1] not in ("done", "failed"):
            audit.lost += 1
            continue
        audit.attempts += row[4]
        lines = turns.get(key, [])
        if row[1] == "failed":
            audit.failed += 1
            audit.failed_reasons.append(row[3] or "")
            if not (row[3] or "").strip():
                audit.problems.append(f"{key}: failed without a reason")
            if any(k[0] == key for k in scores):
                audit.problems.append(f"{key}: a failed episode was scored")
            continue
        audit.done += 1
        if len(lines) > expected_turns:
            audit.duplicates += len(lines) - expected_turns
        if [i for i, _, _ in lines] != list(range(min(len(lines), expected_turns))) or len(lines) < expected_turns:
            audit.problems.append(f"{key}: done with turn indexes {[i for i, _, _ in lines]}, expected 0..{expected_turns - 1}")
        if any(not text.strip() for _, _, text in lines):
            audit.problems.append(f"{key}: an empty turn")
        if said is not None:
            texts = [text for _, _, text in lines]
            for k in range(1, len(texts)):
                answered = said.get(texts[k])
                if answered is None or answered not in (tuple(texts[:k]), tuple(texts[1:k])):
                    audit.problems.append(f"{key}: turn {k} does not answer the turns stored before it")
                    break
        roles = [role for _, role, _ in lines]
        if roles != ["supporter", *(["seeker", "supporter"] * rounds)][: len(roles)]:
            audit.problems.append(f"{key}: roles out of order {roles}")
        if dimensions:
            final = [k for k in scores if k[0] == key and k[2] == -1]
            if len(final) < dimensions:
                audit.problems.append(f"{key}: {len(final)} of {dimensions} final scores")
            audit.duplicates += max(0, len(final) - dimensions)
    audit.duplicates += sum(n - 1 for n in scores.values() if n > 1)
    orphans = set(turns) - set(episodes)
    if orphans:
        audit.problems.append(f"turns for {len(orphans)} unknown episodes")
    if unique_texts:  # generated lines only: the opener is the same fixed greeting everywhere
        generated = Counter(text for lines in turns.values() for idx, _, text in lines if idx > 0)
        audit.duplicates += sum(n - 1 for n in generated.values() if n > 1)
    audit.score_status = score_status
    return audit


def planned_keys(config: Path) -> list[str]:
    from esc_eval.runs.config import load_config
    from esc_eval.runs.execution.plan import RunPlan

    return [p.key for p, _ in RunPlan.prepare(load_config(config)).episodes()]


# -- fault scenarios -----------------------------------------------------------------


@dataclass
class FaultResult:
    fault: str
    rate: float
    run: Completed
    audit: Audit
    faults_served: Counter[str]
    server_requests: int

    @property
    def matched(self) -> bool:
        """Every fault the server served is an event row of the right kind."""
        expected: Counter[str] = Counter()
        for fault, n in self.faults_served.items():
            expected[CLIENT_FAULT_KIND[fault]] += n
        return self.audit.fault_events() == expected

    def row(self) -> str:
        a = self.audit
        served = sum(self.faults_served.values())
        events = sum(a.fault_events().values())
        outcome = f"exit {self.run.returncode}: {a.done} done, {a.failed} failed"
        if a.failed:
            outcome += " (all retries faulted; reason stored)"
        outcome += f"; {served} faults served = {events} retry/fault events{'' if self.matched else ' (MISMATCH)'}"
        if a.score_status.get("failed"):
            outcome += f"; {a.score_status['failed']} judge scores failed (stored as failed)"
        return f"| {self.fault} | {self.rate:.0%} | {outcome} | {a.lost} | {a.duplicates} |"


SCENARIO_ROUNDS = 2
SCENARIO_CARDS = 10
SLOW_TIMEOUT = 1.5


async def run_fault_scenario(workdir: Path, fault: str, rate: float = 0.25, *, seed: int = 0) -> FaultResult:
    """Seeker, two supporters and the judge on one server serving ``fault`` at ``rate``; audit the store.

    10 cards x 2 supporters, 2 rounds: 80 simulation requests and 140 judge requests before retries.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    responder = ChainResponder()
    server = await FakeOpenAIServer(responder=responder, fault_rates={fault: rate}, seed=seed,
                                    slow_seconds=SLOW_TIMEOUT + 1.0, retry_after=0.05).start()
    try:
        endpoint = {"base_url": server.base_url, "timeout": SLOW_TIMEOUT if fault == "slow" else 20.0, "max_attempts": 6}
        config = write_run_config(
            workdir / "run.toml",
            run={"name": f"fault-{fault}", "rounds": SCENARIO_ROUNDS, "concurrency": 20, "seed": seed},
            cards={"language": "en", "limit": SCENARIO_CARDS},
            seeker={**endpoint, "model": "esc-role", "temperature": 0.7},
            supporters=[{"name": name, **endpoint, "model": f"{name}-model", "temperature": 0.7} for name in ("alpha", "beta")],
            judge={**endpoint, "model": JUDGE_MODEL},
        )
        store = workdir / "run.sqlite"
        run = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", timeout=150)
        audit = audit_store(store, planned_keys(config), rounds=SCENARIO_ROUNDS, dimensions=DIMENSIONS, said=responder.said)
        return FaultResult(fault, rate, run, audit, Counter(server.faults_served), len(server.requests))
    finally:
        await server.stop()


# -- a subprocess we can kill --------------------------------------------------------


async def spawn_esc_eval(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esc_eval.runs.cli", *args,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def kill_when(proc: asyncio.subprocess.Process, server: FakeOpenAIServer, answered: int, extra_delay: float) -> bool:
    """SIGKILL ``proc`` once ``server`` has answered ``answered`` requests (plus ``extra_delay`` s).

    Returns whether the process was still running when killed.
    """
    while proc.returncode is None and server.answered < answered:
        await asyncio.sleep(0.002)
    if extra_delay:
        await asyncio.sleep(extra_delay)
    alive = proc.returncode is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()
    return alive


# -- crash and resume ----------------------------------------------------------------


@dataclass
class KillResult:
    kills: int
    killed_mid_run: int
    answered_before_final: int
    final: Completed
    audit: Audit
    store: Path

    def row(self) -> str:
        a = self.audit
        outcome = (f"{self.killed_mid_run} kills mid-run, then exit {self.final.returncode}: {a.done} done, {a.failed} failed, "
                   f"{a.attempts - a.planned} episode restarts, {sum(a.score_status.values())} scores")
        return f"| SIGKILL x{self.kills} at random points, `--resume` each time | - | {outcome} | {a.lost} | {a.duplicates} |"


async def run_kill_scenario(workdir: Path, *, episodes: int = 30, rounds: int = 3, kills: int = 3, seed: int = 2406_14952) -> KillResult:
    """A run with a judge, SIGKILLed ``kills`` times (each after 10..40 more server answers plus 0..50 ms,
    from a seeded RNG) and resumed each time, then resumed to the end; the store is audited.
    """
    import random

    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    responder = ChainResponder()
    sim = await FakeOpenAIServer(responder=responder, delay=0.03, record=False).start()
    judge = await FakeOpenAIServer(responder=responder, delay=0.03, record=False).start()
    try:
        config = write_run_config(
            workdir / "run.toml",
            run={"name": "kill", "rounds": rounds, "concurrency": 8, "seed": 5},
            cards={"path": str(write_cards(workdir / "cards.jsonl", episodes)), "language": "en"},
            seeker={"base_url": sim.base_url, "model": "esc-role", "temperature": 0.7},
            supporters=[{"name": "s", "base_url": sim.base_url, "model": "s-model", "temperature": 0.7}],
            judge={"base_url": judge.base_url, "model": JUDGE_MODEL, "max_connections": 4},
        )
        store = workdir / "run.sqlite"
        run = ["run", str(config), "--store", str(store), "--no-monitor"]
        killed_mid_run = 0
        for attempt in range(kills):
            proc = await spawn_esc_eval(*run, *(["--resume"] if attempt else []))
            # 10..40 more answers: well short of the 2*rounds*episodes a whole run needs
            killed_mid_run += await kill_when(proc, sim, sim.answered + rng.randint(10, 40), rng.uniform(0, 0.05))
        answered = sim.answered
        final = await esc_eval(*run, "--resume")
        audit = audit_store(store, planned_keys(config), rounds=rounds, dimensions=DIMENSIONS, said=responder.said)
        return KillResult(kills, killed_mid_run, answered, final, audit, store)
    finally:
        await sim.stop()
        await judge.stop()


# -- a backend that always fails, then recovers --------------------------------------


@dataclass
class GiveUpResult:
    cards: int
    rounds: int
    first: Completed
    first_audit: Audit
    resumed: Completed
    faults_after_resume: int
    retried: Completed
    retried_audit: Audit
    sim_requests_on_retry: int
    judge_requests_on_retry: int
    attempts: dict[str, set[int]]
    faults_served: int

    def row(self) -> str:
        f, r = self.first_audit, self.retried_audit
        outcome = (f"exit {self.first.returncode}: {f.done} done, {f.failed} failed (reason kept); "
                   f"`--resume --retry-failed` after recovery: exit {self.retried.returncode}, {r.done} done, "
                   f"each failed episode run once more ({self.sim_requests_on_retry} requests)")
        return (f"| one supporter answers HTTP 500 always (max_attempts 2) | 100% | {outcome} "
                f"| {r.lost} | {max(f.duplicates, r.duplicates)} |")


async def run_give_up_scenario(workdir: Path, *, cards: int = 4, rounds: int = 2) -> GiveUpResult:
    """Supporter ``bad`` always gets HTTP 500; its episodes fail; ``--resume`` skips them;
    after the server recovers, ``--resume --retry-failed`` runs each exactly once more."""
    workdir.mkdir(parents=True, exist_ok=True)
    responder = ChainResponder()
    healthy = await FakeOpenAIServer(responder=responder).start()
    broken = await FakeOpenAIServer(responder=responder, fault_rates={"500": 1.0}).start()
    try:
        config = write_run_config(
            workdir / "run.toml",
            run={"name": "always-500", "rounds": rounds, "concurrency": 8},
            cards={"language": "en", "limit": cards},
            seeker={"base_url": healthy.base_url, "model": "esc-role", "temperature": 0.7},
            supporters=[
                {"name": "good", "base_url": healthy.base_url, "model": "good-model", "temperature": 0.7},
                {"name": "bad", "base_url": broken.base_url, "model": "bad-model", "temperature": 0.7, "max_attempts": 2},
            ],
            judge={"base_url": healthy.base_url, "model": JUDGE_MODEL},
        )
        store = workdir / "run.sqlite"
        keys = planned_keys(config)
        run = ["run", str(config), "--store", str(store), "--no-monitor"]

        first = await esc_eval(*run)
        first_audit = audit_store(store, keys, rounds=rounds, dimensions=DIMENSIONS, said=responder.said)
        resumed = await esc_eval(*run, "--resume")
        faults_after_resume = broken.faults_served["500"]

        broken.fault_rates = {}  # the server recovers
        sim_before = len(broken.requests)
        judge_before = sum(1 for r in healthy.requests if r["model"] == JUDGE_MODEL)
        retried = await esc_eval(*run, "--resume", "--retry-failed")
        retried_audit = audit_store(store, keys, rounds=rounds, dimensions=DIMENSIONS, said=responder.said)
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        attempts: dict[str, set[int]] = {}
        for supporter, n in conn.execute("SELECT supporter, attempts FROM episodes"):
            attempts.setdefault(supporter, set()).add(n)
        conn.close()
        return GiveUpResult(
            cards, rounds, first, first_audit, resumed, faults_after_resume, retried, retried_audit,
            len(broken.requests) - sim_before,
            sum(1 for r in healthy.requests if r["model"] == JUDGE_MODEL) - judge_before,
            attempts, broken.faults_served["500"],
        )
    finally:
        await healthy.stop()
        await broken.stop()
