"""The documented plugin form really installs: build tests/plugin_persona with pip, then list and run its personas."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from esc_eval.testing.cli import ROOT, esc_eval, write_config

PLUGIN = ROOT / "tests" / "plugin_persona"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target``: a real wheel build (setuptools validates the entry points) into a folder."""
    source = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "esc_eval_plugin_persona" / "personas" / "stoic.yaml").is_file(), "the persona file is package data"
    return target


async def test_an_installed_plugin_is_listed_and_runs(installed: Path, tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(installed)])}
    listed = await esc_eval("personas", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "plugin esc-eval-plugin-persona (esc_eval_plugin_persona.personas:stoic.yaml)" in rows["stoic"]
    assert "plugin esc-eval-plugin-persona (esc_eval_plugin_persona:Echoing)" in rows["echoing"]

    server = await fake_server()
    config = write_config(tmp_path / "run.toml", seeker_url=server.base_url, supporters={"a": server.base_url}, rounds=1,
                          extra='\n[cards]\nlanguage = "en"\nlimit = 1\n')
    text = config.read_text(encoding="utf-8").replace('protocol = "default"', 'protocol = "default"\npersonas = ["stoic", "echoing"]')
    config.write_text(text, encoding="utf-8")
    store = tmp_path / "run.sqlite"
    ran = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with sqlite3.connect(store) as db:
        assert sorted(db.execute("SELECT persona, status FROM episodes")) == [("echoing", "done"), ("stoic", "done")]
    seeker_prompts = [r["messages"][0]["content"] for r in server.requests if r["model"] == "esc-role"]
    assert any("flat, factual voice" in p for p in seeker_prompts), "the installed stoic.yaml shaped the seeker"
