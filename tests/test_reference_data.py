"""Tests that read ESC-Eval's reference data skip without it, say where to get it, and fail under CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.reference import ROOT

ONE_TEST = "tests/roles/test_loaders.py::test_path_may_be_a_string"
FIXTURE_TEST = "tests/roles/test_personas.py::test_card_facts_of_our_cards_and_esc_eval_cards"


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "ESC_EVAL_DATA")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_missing_data_skips_with_where_to_get_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = _pytest(ONE_TEST, FIXTURE_TEST, ESC_EVAL_DATA=str(tmp_path / "absent"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 skipped" in done.stdout
    assert "ESC_EVAL_DATA" in done.stdout and "ESC-Eval's public repository" in done.stdout
    assert str(tmp_path / "absent") in done.stdout


def test_missing_data_fails_under_ci(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = _pytest(ONE_TEST, FIXTURE_TEST, ESC_EVAL_DATA=str(tmp_path / "absent"), CI="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 error" in done.stdout and "CI is set" in done.stdout


def test_esc_eval_data_names_the_folder_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Pointed at a folder with a copy of one card file, the test reads that folder, not ../shared."""
    folder = tmp_path / "data"
    folder.mkdir()
    card = {"base": "Age: 30\nGender: Female\nOccupation: Nurse\nProblem: stress", "res": "工作学习", "source": "ESConv",
            "language": "english", "id": 32025}
    (folder / "test_en.json").write_text(json.dumps([card]), encoding="utf-8")
    done = _pytest(ONE_TEST, ESC_EVAL_DATA=str(folder), CI="true")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    (folder / "test_en.json").write_text(json.dumps([{**card, "id": 1}]), encoding="utf-8")
    assert _pytest(ONE_TEST, ESC_EVAL_DATA=str(folder)).returncode == 1
