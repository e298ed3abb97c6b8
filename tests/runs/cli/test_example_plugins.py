"""The example plugin of each kind (tests/plugins, tests/plugin_persona; docs/plugins.md) passes its contract
check, is listed with its description, and runs: one ``esc-eval run`` against the fake server uses all four.

The fast tests make the plugins look installed with a ``.dist-info`` each (``tests.plugins.site``);
the slow one really ``pip install``s the four packages into a folder.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esc_eval.testing import check_backend, check_detector, check_persona, check_turn_policy
from esc_eval.testing.cli import ROOT, esc_eval
from tests.plugins.site import EXAMPLES, example_site

MODULES = ("esc_eval_example_backend", "esc_eval_example_termination", "esc_eval_example_turn_policy", "esc_eval_plugin_persona")


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The examples on ``sys.path`` as if installed; yields the folders a subprocess needs on ``PYTHONPATH``."""
    site, sources = example_site(tmp_path / "site")
    for folder in [*sources, site]:
        monkeypatch.syspath_prepend(str(folder))
    yield [*sources, site]
    for module in MODULES:
        sys.modules.pop(module, None)


async def test_each_example_passes_its_check(plugins: list[Path], fake_server: Any) -> None:
    from esc_eval.agents.backends import BACKENDS
    from esc_eval.environments.behaviours import load_behaviour
    from esc_eval.environments.termination import TERMINATION
    from esc_eval.environments.turn_policies import TURN_POLICIES
    from esc_eval.runs.config import EndpointConfig

    server = await fake_server()
    endpoint = EndpointConfig(backend="plain_http", base_url=server.base_url, model="m", options={"user_agent": "kit-check"})
    closed = EndpointConfig(backend="plain_http", base_url="http://127.0.0.1:9/v1", model="m")
    await check_backend(BACKENDS.get("plain_http"), endpoint=endpoint, failing=closed)
    assert {h.get("User-Agent") for h in server.headers} == {"kit-check"}, "the options reached the backend"
    check_detector(TERMINATION.create({"name": "quiet_seeker", "words": 3}))
    check_turn_policy(TURN_POLICIES.create({"name": "seeker_bursts", "burst": 2}))
    check_turn_policy(TURN_POLICIES.create({"name": "seeker_bursts", "burst": 1, "opener": False}))
    for persona in ("echoing", "stoic"):
        check_persona(load_behaviour(persona)[1])


def seeker_then_quiet(body: dict[str, Any]) -> str:
    """The seeker talks for its first burst, then answers in one word; the supporter names its model."""
    if body["model"] != "esc-role":
        return f"{body['model']} hears you."
    seeker_lines = sum(1 for m in body["messages"] if m["role"] == "assistant")
    return "I have been feeling very low about my job for weeks now." if seeker_lines < 2 else "Fine."


LISTED = [
    ("backend", "plain_http", "An OpenAI-compatible server through one aiohttp session, each request sent once (example plugin)."),
    ("turn policy", "seeker_bursts", "The seeker speaks ``burst`` times in a row, then the supporter once (after the fixed opener if ``opener``)."),
    ("termination", "quiet_seeker", "Terminate once the seeker's last ``lines`` replies each have fewer than ``words`` words."),
    ("persona", "echoing", "Repeats the listener's last words before answering (plugin, Python)."),
]
"""What ``plugins list`` says of each example: its docstring's first line (a persona's ``description``)."""

def listed_name(line: str) -> tuple[str, str]:
    """``(kind, name)`` of a ``plugins list`` line (a kind may be two words)."""
    kind = next(k for k in ("turn policy", "card reader", "source reader", line.split()[0]) if line.startswith(k + " "))
    return kind, line[len(kind):].split()[0]


PLUGIN_CONFIG = """\
[run]
turn_policy = {{name = "seeker_bursts", burst = 2}}
termination = [{{name = "quiet_seeker", words = 3, lines = 2}}, {{name = "max_rounds", rounds = 4}}]

[cards]
language = "en"
limit = 2

[seeker]
base_url = "{url}"
model = "esc-role"
personas = ["echoing"]

[[supporters]]
name = "a"
backend = "plain_http"
base_url = "{url}"
model = "a-model"
options = {{user_agent = "esc-eval-kit-test"}}
"""
"""A run naming one plugin of each kind, as docs/plugins.md shows it."""


async def run_with_all_four(pythonpath: list[Path], tmp_path: Path, fake_server: Any) -> None:
    env = {"PYTHONPATH": os.pathsep.join(map(str, [ROOT, *pythonpath]))}
    listed = await esc_eval("plugins", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {listed_name(line): line for line in listed.stdout.splitlines()}
    for kind, name, description in LISTED:
        line = rows[(kind, name)]
        assert " plugin esc-eval-" in line and line.endswith(f"  {description}"), line

    server = await fake_server(responder=seeker_then_quiet)
    config = tmp_path / "run.toml"
    config.write_text(PLUGIN_CONFIG.format(url=server.base_url), encoding="utf-8")
    store = tmp_path / "run.sqlite"
    ran = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with sqlite3.connect(store) as db:
        episodes = db.execute("SELECT key, persona, status, outcome, reason FROM episodes").fetchall()
        assert len(episodes) == 2 and all(e[1:] == ("echoing", "done", "terminated", "quiet_seeker: 2 replies under 3 words") for e in episodes)
        for (key, *_) in episodes:
            roles = [r for (r,) in db.execute("SELECT role FROM turns WHERE episode_key = ? ORDER BY idx", (key,))]
            # the opener, a burst of two seeker lines, the supporter, then two one-word seeker lines: quiet
            assert roles == ["supporter", "seeker", "seeker", "supporter", "seeker", "seeker"], roles
    supporter_agents = {h.get("User-Agent") for h, r in zip(server.headers, server.requests) if r["model"] == "a-model"}
    assert supporter_agents == {"esc-eval-kit-test"}, "the supporter's requests went through the plugin backend with its option"
    seeker_prompts = [r["messages"][0]["content"] for r in server.requests if r["model"] == "esc-role"]
    assert all("Echo first: begin your reply with the listener's last words" in p for p in seeker_prompts)


async def test_a_run_uses_all_four_example_plugins(plugins: list[Path], tmp_path: Path, fake_server: Any) -> None:
    await run_with_all_four(plugins, tmp_path, fake_server)


@pytest.mark.slow
async def test_the_examples_pip_install_and_run(tmp_path: Path, fake_server: Any) -> None:
    """A real wheel build of each (setuptools validates the entry points), installed into one folder (~20 s of pip)."""
    sources = []
    for kind, folder in EXAMPLES.items():
        sources.append(tmp_path / "src" / kind)
        shutil.copytree(folder, sources[-1], ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                           "--target", str(target), *map(str, sources)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.name for p in target.glob("*.dist-info")} == {f"{m}-0.1.0.dist-info" for m in MODULES}
    await run_with_all_four([target], tmp_path, fake_server)


def test_the_docs_show_each_example_as_it_is_tested() -> None:
    """docs/plugins.md shows each example's code verbatim (tests/test_docs.py runs those blocks and their checks)."""
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for kind, folder in EXAMPLES.items():
        [module] = [p for p in (*folder.glob("*.py"), *folder.glob("*/__init__.py")) if p.name != "setup.py"]
        text = module.read_text(encoding="utf-8")
        code = text[text.index('"""', 3) + 3:].strip()  # after the module's docstring
        assert code in docs, f"docs/plugins.md does not show {module.relative_to(ROOT)} ({kind}) as it is"
