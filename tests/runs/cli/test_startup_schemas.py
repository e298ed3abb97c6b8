"""Schemas are pydantic models, loaded only when a file is validated: the command line starts without pydantic."""

from __future__ import annotations

import os
import subprocess
import sys

from esc_eval.testing.cli import ROOT


def test_importing_the_cli_loads_no_pydantic() -> None:
    code = "import esc_eval.runs.cli, sys\nprint('pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
