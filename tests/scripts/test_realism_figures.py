"""scripts/realism_figures.py: the embedded model's seekers against people, as docs/seeker.md quotes them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.reference import needs_esconv, require_esconv

ROOT = Path(__file__).resolve().parents[2]


def script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "realism_figures.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"})


def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("realism_figures", ROOT / "scripts" / "realism_figures.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_the_farthest_features_come_first_and_inapplicable_ones_are_left_out() -> None:
    realism = {"features": {"parroting": {"simulated": 0.8, "human": 0.01, "normalised": 21.0},
                            "agreement": {"simulated": None, "human": 0.2, "normalised": None},
                            "hedges": {"simulated": 0.0, "human": 0.08, "normalised": 0.5},
                            "new_words": {"simulated": 0.3, "human": 0.9, "normalised": 6.6}}}
    assert module().top_features(realism, 2) == ["parroting 0.80 vs 0.01 (21.00 sd)", "new_words 0.30 vs 0.90 (6.60 sd)"]


def test_a_missing_reference_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = script(str(tmp_path / "out"), "--reference", str(tmp_path / "nope.json"))
    assert done.returncode == 2 and "--reference: " in done.stderr and "nope.json: no such file" in done.stderr
    assert not (tmp_path / "out").exists(), "nothing written"


@needs_esconv
@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_short_real_run_gives_both_seekers_figures(tmp_path: Path) -> None:
    done = script(str(tmp_path), "--cards", "2", "--rounds", "2", "--reference", str(require_esconv()), timeout=1700)
    assert done.returncode == 0, done.stderr
    rows = {row["seeker"]: row for row in json.loads((tmp_path / "realism.json").read_text(encoding="utf-8"))}
    assert set(rows) == {"smollm2-135m-adapter", "smollm2-135m"}
    for row in rows.values():
        realism = row["realism"]
        assert row["n_episodes"] == 2 and realism["rounds"] == 2 and realism["n_reference"] == 201
        assert 0 <= realism["auc_ci"][0] <= realism["auc"] <= realism["auc_ci"][1] <= 1 and 0 <= realism["index"] <= 100
    assert "done: 4 episodes finished" in done.stdout and "| smollm2-135m-adapter | 2 |" in done.stdout
