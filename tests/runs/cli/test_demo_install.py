"""``esc-eval demo`` without the local engine (no ``.[local]``): exit 2, one line saying what to install, no store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from esc_eval.testing.cli import ROOT

# In this interpreter `import NAME` (and its submodules) fails as it does where NAME is not installed.
WITHOUT = """
import sys
class Missing:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == {name!r} or fullname.startswith({name!r} + "."):
            raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)
        return None
sys.meta_path.insert(0, Missing())
from esc_eval.runs.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("missing", ["torch", "transformers", "gguf"])
def test_demo_without_the_local_engine_is_one_line_and_creates_nothing(tmp_path: Path, missing: str) -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT.format(name=missing), "demo", "--sessions", "1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esc-eval: error: the demo runs the embedded model"), done.stderr
    needs = re.search(r"needs (.+), not installed here", lines[0])
    assert needs and missing in needs.group(1).split(", "), lines[0]  # (transformers does not import without torch)
    assert 'pip install -e ".[local]"' in lines[0]
    assert done.stdout == "" and list(tmp_path.iterdir()) == [], "no store, no esc-eval-runs folder"
