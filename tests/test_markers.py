"""The test markers: README's fast command leaves out every heavy test, and tmux tests skip without tmux (fail under CI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.reference import ROOT

TMUX_TESTS = "tests/runs/monitor/test_tmux.py"
HEAVY_FILES = {  # each holds only tests the fast command must leave out, one per marker
    "tests/runs/monitor/test_tmux.py": "tmux",
    "tests/runs/annotation/test_browser.py": "browser",
    "tests/runs/distributed/test_ray.py": "ray",
    "tests/vllm/test_vllm.py": "vllm",
    "tests/runs/test_real_model.py": "model",
}


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=180)


def _fast_selection() -> str:
    """The ``-m`` expression of README's fast command."""
    readme = (Path(ROOT) / "README.md").read_text(encoding="utf-8")
    found = re.search(r'python -m pytest -q -m "([^"]+)"', readme)
    assert found, "README shows no fast command"
    return found.group(1)


def test_the_fast_command_leaves_out_every_heavy_file_and_keeps_the_rest() -> None:
    selection = _fast_selection()
    assert all(marker in selection for marker in ("slow", *HEAVY_FILES.values()))
    done = _pytest("--collect-only", "-m", selection, *HEAVY_FILES, "tests/reliability/test_faults.py")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert not [line for line in collected if line.split("::")[0] in HEAVY_FILES], collected
    faults = [line for line in collected if "test_faults.py" in line]
    assert faults and not any("at_25_percent" in line for line in faults)  # its slow test out, the others in


def test_tmux_tests_skip_without_tmux(tmp_path: Path) -> None:
    done = _pytest(TMUX_TESTS, PATH=str(tmp_path))  # no tmux on this PATH
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2 skipped\b", done.stdout) and "tmux is missing" in done.stdout, done.stdout


def test_tmux_tests_fail_without_tmux_under_ci(tmp_path: Path) -> None:
    done = _pytest(TMUX_TESTS, PATH=str(tmp_path), CI="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CI is set" in done.stdout
