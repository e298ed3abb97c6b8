"""``esc-eval annotate`` refusals: exit 2, one line, and the store's bytes exactly as they were (no meta, no journal switch)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from tests.reliability.test_bad_input import snapshot
from tests.runs.annotation.helpers import make_store


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esc-eval: error: "), stderr
    return lines[0]


async def refused(work: Path, *args: str) -> str:
    """Run ``esc-eval annotate ARGS``; it must exit 2 with one line and leave every file in ``work`` as it was."""
    before = snapshot(work)
    result = await esc_eval("annotate", *args, "--port", "0", cwd=work)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert snapshot(work) == before, "a refused annotate must leave the store byte-identical"
    return one_error_line(result.stderr)


async def test_importing_a_missing_file_leaves_the_store_untouched(tmp_path: Path) -> None:
    make_store(tmp_path / "s.sqlite")
    line = await refused(tmp_path, "s.sqlite", "--import", "nope.jsonl")
    assert "nope.jsonl" in line


async def test_an_empty_store_is_refused_without_a_write(tmp_path: Path) -> None:
    Store.create(tmp_path / "empty.sqlite", origin="test").close_sync()
    line = await refused(tmp_path, "empty.sqlite")
    assert "empty.sqlite: no finished dialogues to annotate" in line


async def test_a_score_file_of_only_minus_one_imports_nothing_and_says_so(tmp_path: Path) -> None:
    make_store(tmp_path / "s.sqlite")
    scores = tmp_path / "score_bot_en.json"
    scores.write_text(json.dumps({"0": {"fluency": -1, "empathic": -1}, "1": {"fluency": -1}}), encoding="utf-8")
    line = await refused(tmp_path, "s.sqlite", "--import", scores.name)
    assert f"{scores.name}: nothing importable" in line and "-1" in line
    scores.write_text(json.dumps({"0": {"fluency": -1, "empathic": 3}}), encoding="utf-8")  # one real label: imported
    done = await esc_eval("annotate", "s.sqlite", "--import", scores.name, cwd=tmp_path)
    assert done.returncode == 0 and "1 labels imported" in done.stdout, done.stderr


async def test_a_port_in_use_is_one_line_and_annotate_writes_nothing_first(tmp_path: Path) -> None:
    make_store(tmp_path / "s.sqlite")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        before = snapshot(tmp_path)
        for command in ("annotate", "view"):
            result = await esc_eval(command, "s.sqlite", "--port", str(port), cwd=tmp_path)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            line = one_error_line(result.stderr)
            assert f"--port {port}: 127.0.0.1:{port} is in use" in line and "--port 0" in line, line
            assert "Traceback" not in result.stderr
        assert snapshot(tmp_path) == before, "the item-id secret and the journal switch come after the port is bound"
