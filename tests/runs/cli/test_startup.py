"""Start-up cost of the command line: a cheap command must not pay for the heavy libraries."""

from __future__ import annotations

import os
import subprocess
import sys

from esc_eval.testing.cli import ROOT

HEAVY = ("autogen_core", "torch", "aiohttp")


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport sys\nprint('heavy:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()[1:]


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert loaded_after("import esc_eval.runs.cli") == []


def test_cards_validate_loads_no_heavy_library() -> None:
    code = f"from esc_eval.runs.cli import main\nassert main(['cards', 'validate', {str(ROOT / 'roles/data/cards/en.yaml')!r}]) == 0"
    assert loaded_after(code) == []



def test_the_report_statistics_load_only_when_a_report_is_made() -> None:
    script = "import esc_eval.runs.cli, sys\nprint(*(m for m in ('numpy', 'scipy', 'statsmodels') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
