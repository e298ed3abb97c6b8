"""The claims CI enforces on the code itself: mypy finds no error, ruff is clean, every docstring example runs.

They are tests (not extra steps in ``.ci/run``) so that the README's one test command checks them too.
The configuration of mypy and ruff is in pyproject.toml; docs/architecture.md#checks says what each covers.
"""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("agents", "environments", "roles", "runs", "testing")
OPTIONAL = {"torch", "transformers", "peft", "gguf", "accelerate", "vllm", "uvloop", "ray", "matplotlib", "playwright"}
"""Import names of the optional extras (pyproject.toml): a module that needs a missing one is skipped, saying which."""


def _checked(*command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_mypy_finds_no_error_in_the_package() -> None:
    """``mypy -p esc_eval`` (esc_eval/ links the rooms, so every module is checked under its installed name)."""
    result = _checked("mypy", "-p", "esc_eval", timeout=1150)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_ruff_is_clean() -> None:
    """``ruff check .`` over the repository: the package, tests, benchmarks and scripts."""
    result = _checked("ruff", "check", ".", "--output-format", "concise", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _modules_with_examples() -> list[str]:
    """Every module of the package whose source holds a ``>>>`` example, by its installed name."""
    names = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.append(".".join(("esc_eval", *(parts[:-1] if parts[-1] == "__init__" else parts))))
    for path in sorted((ROOT / "esc_eval").glob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            names.append("esc_eval" if path.stem == "__init__" else f"esc_eval.{path.stem}")
    return names


EXAMPLES = _modules_with_examples()


def test_docstring_examples_are_found() -> None:
    """The doctest below must not pass by finding nothing (a path change would empty EXAMPLES)."""
    assert "esc_eval.runs.analysis.scoring" in EXAMPLES
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("name", EXAMPLES)
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``>>>`` examples of one module give the output they show (``# doctest: +SKIP`` ones need a model or data)."""
    monkeypatch.chdir(ROOT)  # examples name paths as a user in the repository would
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional {error.name}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (details above)"
