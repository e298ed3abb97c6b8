"""Where commands write: a bad ``--out``/``--store`` is one line and exit 2 with nothing written; folders are made; ``--out``
is honoured by every report format; a closed pipe ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from esc_eval.testing.cli import ROOT, esc_eval
from esc_eval.testing.scenarios import write_run_config
from tests.reliability.test_bad_input import snapshot
from tests.runs.viewer.helpers import make_store


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with a store (``s.sqlite``) and a plain file (``afile``)."""
    make_store(tmp_path / "s.sqlite", cards=2)
    (tmp_path / "afile").write_text("mine\n", encoding="utf-8")
    return tmp_path


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("WARNING ")]  # the endpoint pre-flight's notes
    assert len(lines) == 1 and lines[0].startswith("esc-eval: error: "), stderr
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["export", "s.sqlite", "--out", "afile"], ["--out afile", "is a file"]),
    (["export", "s.sqlite", "--format", "jsonl", "--out", "afile/sub"], ["--out afile/sub", "afile is a file, not a folder"]),
    (["report", "s.sqlite", "--format", "html", "--out", "."], ["--out .", "is a folder"]),
    (["report", "s.sqlite", "--format", "json", "--out", "afile/x.json"], ["afile is a file, not a folder"]),
    (["report", "s.sqlite", "--plot", "afile/x.png"], ["--plot afile/x.png", "afile is a file"]),
    (["annotate", "s.sqlite", "--export", "."], ["--export .", "is a folder"]),
])
async def test_an_unwritable_out_path_is_one_line_exit_2_and_nothing_written(work: Path, args: list[str], expected: list[str]) -> None:
    before = snapshot(work)
    result = await esc_eval(*args, cwd=work)
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = one_error_line(result.stderr)
    assert all(text in line for text in expected), line
    assert snapshot(work) == before, "no .tmp file, no folder, no store change"


async def test_a_store_under_a_file_or_a_directory_as_store_is_one_line(work: Path, fake_server: Any) -> None:
    server = await fake_server()  # reachable endpoints: the store is what is wrong
    config = write_run_config(work / "run.toml", run={"name": "paths", "rounds": 1}, cards={"language": "en", "limit": 1},
                              seeker={"base_url": server.base_url, "model": "esc-role"},
                              supporters=[{"name": "a", "base_url": server.base_url, "model": "a-model"}])
    before = snapshot(work)
    under = await esc_eval("run", str(config), "--store", "afile/run.sqlite", "--no-monitor", cwd=work)
    assert under.returncode == 2 and "afile is a file, not a folder" in one_error_line(under.stderr), under.stderr
    (work / "dir.sqlite").mkdir()
    folder = await esc_eval("run", str(config), "--store", "dir.sqlite", "--no-monitor", cwd=work)
    assert folder.returncode == 2, folder.stderr
    line = one_error_line(folder.stderr)
    assert "dir.sqlite: is a directory, not a store file" in line and "already exists" not in line
    assert snapshot(work) == before | {"dir.sqlite": None}


@pytest.mark.parametrize("fmt", ["table", "md", "json", "csv", "html"])
async def test_every_report_format_honours_out_and_makes_its_folders(work: Path, fmt: str) -> None:
    out = work / "new" / "folder" / f"report.{fmt}"
    written = await esc_eval("report", "s.sqlite", "--format", fmt, "--out", str(out), cwd=work)
    assert written.returncode == 0, written.stderr
    assert written.stdout.startswith(f"{out}: "), written.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "the file and nothing beside it (no .tmp)"
    if fmt == "html":
        assert out.read_text(encoding="utf-8").lower().startswith("<!doctype html>")
        return
    printed = await esc_eval("report", "s.sqlite", "--format", fmt, cwd=work)
    assert printed.returncode == 0 and out.read_text(encoding="utf-8").rstrip("\n") == printed.stdout.rstrip("\n")
    if fmt == "json":
        assert json.loads(out.read_text(encoding="utf-8"))["store"] == "s.sqlite"


def test_a_closed_pipe_ends_quietly(work: Path) -> None:
    """``esc-eval report STORE | head``: the reader is gone before the output is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", "report", "s.sqlite", "--format", "csv"], cwd=work,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr


async def test_judge_store_under_a_file_is_refused_before_any_judging(work: Path) -> None:
    config = work / "judge.toml"
    config.write_text('[judge]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "judge"\n', encoding="utf-8")  # nothing listens there
    before = snapshot(work)
    result = await esc_eval("judge", "result_a_en.json", "--config", str(config), "--store", "afile/s.sqlite", cwd=work)
    assert result.returncode == 2, result.stderr
    assert "--store afile/s.sqlite" in one_error_line(result.stderr) and "afile is a file, not a folder" in result.stderr
    assert snapshot(work) == before
