"""A plugin named like a built-in is refused, naming both: when a config is loaded (exit 2) and by ``plugins list``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from esc_eval.runs.cards.config import parse_build_config
from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.registries import name_conflicts, registries
from esc_eval.testing.cli import ROOT, esc_eval, write_config
from tests.plugins.site import EXAMPLES, dist_info

URL = "http://127.0.0.1:9/v1"
SHADOWS = {
    "esc_eval.backends": {"openai": "esc_eval_example_backend:plain_http"},
    "esc_eval.personas": {"guarded": "esc_eval_plugin_persona:Echoing"},
}
"""A package reusing two built-in names: the backend ``openai`` and the persona ``guarded`` (a built-in persona file)."""
BACKEND_LINE = ("backend plugin 'openai' (esc-eval-shadows (esc_eval_example_backend:plain_http)) reuses the name of the built-in "
                "backend 'openai' (esc_eval.agents.backends:openai_backend): rename its entry point in the group esc_eval.backends")
PERSONA_LINE = ("persona plugin 'guarded' (esc-eval-shadows (esc_eval_plugin_persona:Echoing)) reuses the name of the built-in "
                "persona 'guarded': rename its entry point in the group esc_eval.personas")


@pytest.fixture
def shadows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = dist_info(tmp_path / "site", "esc-eval-shadows", SHADOWS)
    for folder in (EXAMPLES["backend"], EXAMPLES["persona"], site):
        monkeypatch.syspath_prepend(str(folder))
    yield site
    for module in ("esc_eval_example_backend", "esc_eval_plugin_persona"):
        sys.modules.pop(module, None)


def test_every_kind_of_registry_is_gathered() -> None:
    assert [r.kind for r in registries()] == ["backend", "turn policy", "termination", "persona", "card reader", "source reader"]
    assert name_conflicts() == []


def test_plugins_reusing_built_in_names_are_named_with_the_built_ins(shadows: Path) -> None:
    assert name_conflicts() == [BACKEND_LINE, PERSONA_LINE]


def test_loading_any_config_refuses_them_in_one_line(shadows: Path) -> None:
    raw = {"seeker": {"base_url": URL, "model": "m"}, "supporters": [{"name": "a", "base_url": URL, "model": "m"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "run.toml")
    assert str(caught.value) == f"run.toml: {BACKEND_LINE} (and 1 more: esc-eval plugins list)"
    with pytest.raises(ConfigError, match="^judge.toml: backend plugin 'openai'"):
        parse_config({"judge": {"base_url": URL, "model": "j"}}, "judge.toml", judge_only=True)
    with pytest.raises(ConfigError, match="^build.toml: backend plugin 'openai'"):
        parse_build_config({"extractor": {"base_url": URL, "model": "x"}}, "build.toml", Path("."))


async def test_the_commands_exit_2_naming_both(shadows: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLES["backend"]), str(EXAMPLES["persona"]), str(shadows)])}
    config = write_config(tmp_path / "run.toml", seeker_url=URL, supporters={"a": URL})
    ran = await esc_eval("run", str(config), "--store", str(tmp_path / "out" / "run.sqlite"), "--no-monitor", env=env, cwd=tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr.strip().splitlines() == [f"esc-eval: error: {config}: {BACKEND_LINE} (and 1 more: esc-eval plugins list)"]
    assert not (tmp_path / "out").exists(), "nothing may be written"

    listed = await esc_eval("plugins", "list", env=env)
    assert listed.returncode == 2
    assert listed.stderr.strip().splitlines() == [f"esc-eval: error: {BACKEND_LINE}", f"esc-eval: error: {PERSONA_LINE}"]
    rows = [line.split()[:3] for line in listed.stdout.splitlines()]
    assert ["backend", "openai", "built-in"] in rows and ["persona", "guarded", "built-in"] in rows
    assert not any("esc-eval-shadows" in line for line in listed.stdout.splitlines()), "a refused plugin is not listed as usable"

    only = await esc_eval("plugins", "list", "--kind", "termination", env=env)
    assert only.returncode == 0 and only.stderr == "", "a conflict of another kind does not fail a listing of this one"
    personas = await esc_eval("personas", "list", env=env)
    assert personas.returncode == 2 and personas.stderr.strip().splitlines() == [f"esc-eval: error: {PERSONA_LINE}"]
    assert any(line.split()[:2] == ["guarded", "built-in"] for line in personas.stdout.splitlines())
