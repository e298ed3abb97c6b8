"""API keys reach the servers and nothing else: not the store, its WAL, exports, output or logs.

Keys are planted in the environment variables that ``api_key_env`` names (seeker,
supporters, judge). The servers inject faults, including a misbehaving proxy that
reflects the request headers in its error body, so error texts (events, failure
reasons, stderr) are written while the keys are in play.
"""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path

import pytest

from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from esc_eval.testing.scenarios import JUDGE_MODEL, ChainResponder, kill_when, spawn_esc_eval, write_run_config


def leaks(root: Path, outputs: list[str], keys: dict[str, str]) -> list[str]:
    """Where any key (or its random part) appears: files under ``root`` and captured outputs."""
    found = []
    needles = {name: [key.encode(), key.split("-")[-1].encode()] for name, key in keys.items()}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{name} in {path.relative_to(root)}" for name, ns in needles.items() if any(n in data for n in ns)]
    for i, text in enumerate(outputs):
        found += [f"{name} in output {i}" for name, ns in needles.items() if any(n.decode() in text for n in ns)]
    return found


@pytest.mark.slow
async def test_keys_are_sent_but_never_stored_exported_printed_or_logged(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    keys = {role: f"sk-test-{role}-{secrets.token_hex(16)}" for role in ("SEEKER", "SUPPORTER", "JUDGE")}
    env = {f"ESC_{role}_KEY": key for role, key in keys.items()}
    responder = ChainResponder()
    faults = {"echo-headers": 0.15, "500": 0.05, "429": 0.05, "garbage": 0.05}
    server = await fake_server(responder=responder, fault_rates=faults, seed=3)
    hopeless = await fake_server(responder=responder, fault_rates={"echo-headers": 1.0})
    endpoint = {"base_url": server.base_url, "max_attempts": 6}
    config = write_run_config(
        tmp_path / "run.toml",
        run={"name": "secrets", "rounds": 2, "concurrency": 10},
        cards={"language": "en", "limit": 4},
        seeker={**endpoint, "model": "esc-role", "api_key_env": "ESC_SEEKER_KEY"},
        supporters=[
            {**endpoint, "name": "kind", "model": "kind-model", "api_key_env": "ESC_SUPPORTER_KEY"},
            # every answer reflects the key: each episode fails, and its reason is the server's error text
            {"name": "proxied", "base_url": hopeless.base_url, "model": "proxied-model", "api_key_env": "ESC_SUPPORTER_KEY",
             "max_attempts": 2},
        ],
        judge={**endpoint, "model": JUDGE_MODEL, "api_key_env": "ESC_JUDGE_KEY"},
    )
    work = tmp_path / "work"
    work.mkdir()
    store = work / "run.sqlite"
    outputs = []

    # one run killed mid-way, so a WAL with uncheckpointed pages is on disk to be read...
    proc = await spawn_esc_eval("run", str(config), "--store", str(store), "--no-monitor", env=env)
    await kill_when(proc, server, 15, 0.0)
    assert proc.stderr is not None
    outputs.append((await proc.stderr.read()).decode())
    wal = Path(f"{store}-wal")
    wal_bytes = wal.read_bytes() if wal.is_file() else b""
    assert not any(k.encode() in wal_bytes for k in keys.values())

    # ...then resumed to the end, exported, and judged again from the export
    run = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", "--resume", cwd=work, env=env)
    assert run.returncode == 1, run.stderr  # the proxied supporter's episodes fail
    outputs += [run.stdout, run.stderr]
    for fmt in ("esc-eval", "jsonl"):
        # --allow-missing: a judge request may fault 6 times in a row (~1 in 1,400 here); its -1 is no concern of this test
        exported = await esc_eval("export", str(store), "--format", fmt, "--out", str(work / "export"), "--allow-missing", cwd=work, env=env)
        assert exported.returncode == 0, exported.stderr
        outputs += [exported.stdout, exported.stderr]
    judged = await esc_eval("judge", str(work / "export" / "episodes.jsonl"), "--config", str(config), "--language", "en",
                            "--out", str(work / "rescored.json"), cwd=work, env=env)
    outputs += [judged.stdout, judged.stderr]

    # the servers did get the keys, each from the role it belongs to
    sent = Counter((body["model"], headers.get("Authorization"))
                   for s in (server, hopeless) for body, headers in zip(s.requests, s.headers))
    assert {model for model, _ in sent} == {"esc-role", "kind-model", "proxied-model", JUDGE_MODEL}
    expected = {"esc-role": "SEEKER", "kind-model": "SUPPORTER", "proxied-model": "SUPPORTER", JUDGE_MODEL: "JUDGE"}
    assert all(auth == f"Bearer {keys[expected[model]]}" for model, auth in sent), set(sent)
    assert server.faults_served["echo-headers"] > 0 and hopeless.faults_served["echo-headers"] > 0

    # the error texts that reflected the keys were recorded, redacted
    s = Store.open(store, readonly=True)
    try:
        reasons = [e.reason for e in s.episodes(status="failed")]
        details = [e.detail for e in s.events() if e.kind.endswith("5xx")]
    finally:
        s.close_sync()
    assert len(reasons) == 4 and all("Authorization" in r and "Bearer [redacted]" in r for r in reasons), reasons
    assert any("Bearer [redacted]" in d for d in details)

    found = leaks(tmp_path, outputs, keys)
    assert not found, found
