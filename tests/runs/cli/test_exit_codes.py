"""The exit-code table in ``--help``, and an internal error as one line (exit 4) unless ``--debug``/``ESC_EVAL_DEBUG=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esc_eval.runs.cli import main
from esc_eval.runs.execution.result import INTERNAL_ERROR
from esc_eval.testing.cli import ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_gives_the_exit_code_table(args: list[str]) -> None:
    shown = cli(*args)
    assert shown.returncode == 0
    for line in ("2  bad input", "4  internal error", "1  failed episodes", "3  stopped before the plan was done", "0  every planned"):
        assert line in shown.stdout, line
    assert "--debug" in cli("--help").stdout and "--no-preflight" in cli("run", "--help").stdout


def broken(args: object) -> int:
    raise RuntimeError("a bug\nwith a second line")


def test_an_internal_error_is_one_line_with_exit_4(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.delenv("ESC_EVAL_DEBUG", raising=False)
    original = argparse.ArgumentParser.parse_args

    def with_broken_handler(self: argparse.ArgumentParser, argv: list[str] | None = None, namespace: object = None) -> argparse.Namespace:
        parsed = original(self, argv)
        parsed.handler = broken  # a command with a bug
        return parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", with_broken_handler)
    assert main(["plugins", "list"]) == INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "esc-eval: internal error: RuntimeError: a bug" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--debug", "plugins", "list"])
    monkeypatch.setenv("ESC_EVAL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["plugins", "list"])


def test_a_store_under_a_file_is_still_bad_input_not_an_internal_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    refused = cli("report", str(tmp_path / "file" / "s.sqlite"))
    assert refused.returncode == 2 and "internal error" not in refused.stderr, refused.stderr
