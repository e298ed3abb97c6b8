"""Failed episodes said in a few lines: kinds with counts and an example each, in the run's summary and the export's refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esc_eval.runs.analysis.failures import TOP_KINDS, failure_kind, failure_kinds, failure_lines
from esc_eval.testing.cli import esc_eval
from esc_eval.testing.scenarios import write_run_config
from tests.reliability.test_bad_input import snapshot

GAVE_UP = "supporter backend: http://127.0.0.1:{port}/v1: gave up after 6 attempts: reset: ClientConnectorError: refused {n}"


def test_kinds_drop_what_varies_and_keep_role_fault_and_endpoint() -> None:
    reasons = [GAVE_UP.format(port=9, n=n) for n in range(5)] + [GAVE_UP.format(port=8, n=0)]
    reasons += ["seeker agent error: ValueError: card 3 broke", "seeker agent error: ValueError: card 4 broke", None]
    kinds = failure_kinds(reasons)
    assert [(k.kind, k.episodes) for k in kinds] == [
        ("supporter backend: reset (http://127.0.0.1:9/v1)", 5), ("seeker agent error: ValueError", 2),
        ("supporter backend: reset (http://127.0.0.1:8/v1)", 1), ("(no reason recorded)", 1)]
    assert kinds[0].example == GAVE_UP.format(port=9, n=0), "the first message of the kind, whole"
    assert failure_kind("supporter backend: HTTP 400: {'error': 'top_p'}") == "supporter backend: HTTP 400"


def test_lines_show_the_top_kinds_and_count_the_rest() -> None:
    reasons = [f"kind{k}: detail" for k in range(TOP_KINDS + 2) for _ in range(10 - k)]
    reasons.append("long: " + "x\n" * 500)
    lines = failure_lines(failure_kinds(reasons))
    assert len(lines) == TOP_KINDS + 1
    assert lines[0] == "  10 x kind0: detail  e.g. kind0: detail"
    assert lines[-1].startswith("  ... 3 more kinds (10 episodes;")  # kind5 (5), kind6 (4) and the long one (1)
    assert all("\n" not in line and len(line) < 300 for line in lines)


def config(tmp_path: Path, url: str) -> Path:
    return write_run_config(tmp_path / "run.toml", run={"name": "fails", "rounds": 1, "concurrency": 4},
                            cards={"language": "en", "limit": 3}, seeker={"base_url": url, "model": "esc-role"},
                            supporters=[{"name": "a", "base_url": url, "model": "a-model", "max_attempts": 1}])


async def test_an_all_failed_run_says_why_and_its_export_writes_nothing(tmp_path: Path, fake_server: Any) -> None:
    server = await fake_server(fault_for=lambda body: "garbage" if body["model"] == "a-model" else None)
    store = tmp_path / "run.sqlite"
    run = await esc_eval("run", str(config(tmp_path, server.base_url)), "--store", str(store), "--no-monitor")
    assert run.returncode == 1, run.stderr
    summary = run.stdout.splitlines()
    at = summary.index("failed episodes by kind:")
    assert summary[at + 1].startswith("  3 x supporter backend: parse (a)  e.g. supporter backend: a: gave up after 1 attempts"), summary
    assert "unusable response" in summary[at + 1]  # the example is the stored message itself
    assert not any(line.startswith("next: esc-eval export") for line in summary), "no export hint: there is nothing to export"

    before = snapshot(tmp_path)
    exported = await esc_eval("export", str(store), "--out", str(tmp_path / "out"))
    assert exported.returncode == 1 and exported.stdout == "", exported
    line = exported.stderr.strip()
    assert "\n" not in line and f"{store}: no finished dialogue to export: all 3 episodes failed (3 x supporter backend: parse" in line
    assert line.endswith("nothing written")
    assert snapshot(tmp_path) == before
