"""The wheel installs one import name, ``esc_eval``, so it sits beside packages that own ``agents`` and ``runs``.

``agents`` is the OpenAI Agents SDK's import name and ``runs`` a PyPI package of its own: before the namespace
move installing esc-eval beside either broke one of them. The fast tests build the wheel from the working tree
and use it next to stub top-level ``agents`` / ``runs`` packages; the slow one installs the real ones.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOURS = ("openai-agents==0.24.0", "runs==1.3.0")
"""The real packages whose import names esc-eval used to take (pinned: the test checks coexistence, not them)."""
BARE_IMPORT = re.compile(r"^\s*(from|import)\s+(agents|runs|roles|environments|testing)(\.|\s|$)", re.M)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """esc-eval's wheel built from a copy of the working tree's files, ignored ones aside (the tree itself is left untouched)."""
    source = tmp_path_factory.mktemp("source")
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        path = ROOT / name
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(path.readlink())
        elif path.is_file():
            shutil.copy2(path, target)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    [built] = out.glob("esc_eval-*.whl")
    return built


def test_the_wheel_installs_nothing_but_esc_eval_at_the_top(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"esc_eval", wheel.name.split("-py3")[0] + ".dist-info"}
    for needed in ("esc_eval/__init__.py", "esc_eval/runs/cli/__init__.py", "esc_eval/testing/fake_server.py",
                   "esc_eval/roles/data/personas", "esc_eval/runs/viewer/static/app.js", "esc_eval/agents/judge/data/profiles"):
        assert any(name.startswith(needed) for name in names), needed
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "esc-eval = esc_eval.runs.cli:main" in entry_points


def test_the_wheel_works_beside_other_top_level_agents_and_runs(wheel: Path, tmp_path: Path) -> None:
    """Stub distributions own ``agents`` and ``runs``; esc-eval's command and imports still work, and so do theirs."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    for name in ("agents", "runs"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"OWNER = 'stub {name}'\n", encoding="utf-8")
    script = textwrap.dedent("""
        import agents, runs, esc_eval
        from esc_eval.runs.cli import main
        from esc_eval.agents.messages import TurnRequest
        assert agents.OWNER == "stub agents" and runs.OWNER == "stub runs", (agents.OWNER, runs.OWNER)
        assert esc_eval.__file__.startswith(SITE), esc_eval.__file__
        try:
            main(["personas", "list"])
        except SystemExit as stop:
            assert stop.code in (0, None), stop.code
    """).replace("SITE", repr(str(site)))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "guarded" in done.stdout


def test_no_document_or_module_imports_a_bare_room() -> None:
    """README, docs and every module import ``esc_eval.<room>``; a bare ``runs.`` / ``agents.`` would be another package.

    This file is left out: it imports the real neighbours on purpose."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += [p for top in ("agents", "environments", "roles", "runs", "testing", "benchmarks", "tests", "scripts", "esc_eval")
              for p in sorted((ROOT / top).glob("*.py" if top == "esc_eval" else "**/*.py"))]
    found = [f"{path.relative_to(ROOT)}: {match.group(0).strip()}" for path in files if path != Path(__file__).resolve()
             for match in BARE_IMPORT.finditer(path.read_text(encoding="utf-8"))]
    assert not found, found


@pytest.mark.slow
def test_a_fresh_virtualenv_holds_esc_eval_the_openai_agents_sdk_and_runs(wheel: Path, tmp_path: Path) -> None:
    """The real neighbours from the package registry, with esc-eval and its dependencies, in one virtualenv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel), *NEIGHBOURS],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    script = textwrap.dedent("""
        import agents, runs, esc_eval
        from agents import Agent
        from esc_eval.runs.config import load_config
        assert Agent(name="a", instructions="b").name == "a"
        assert "coexist" in str(runs.check_output("echo coexist"))
        assert "site-packages" in esc_eval.__file__
    """)
    done = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cli = subprocess.run([str(venv / "bin" / "esc-eval"), "personas", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "guarded" in cli.stdout, cli.stderr[-2000:]
