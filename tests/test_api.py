"""The Python API (esc_eval/api.py, docs/api.md): run's exit codes as esc-eval run's, resume, run_async, report == the CLI's JSON."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import esc_eval
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.store import Store
from esc_eval.testing.cli import ROOT
from esc_eval.testing.cli import esc_eval as esc_eval_command
from esc_eval.testing.fake_server import FakeOpenAIServer

DOC = ROOT / "docs" / "api.md"


def answer(body: dict[str, Any]) -> str:
    return "Score: 3" if body["model"] == "judge" else f"({body['model']}) I hear you."


def write_config(folder: Path, url: str, *, extra: str = "", beta: str = "") -> Path:
    """Two supporters on ``url``, 2 built-in cards, 1 round, a judge; ``beta`` adds keys to supporter beta's section."""
    path = folder / "eval.toml"
    path.write_text(f"""
[run]
name = "api"
rounds = 1
{extra}
[cards]
language = "en"
limit = 2

[seeker]
base_url = "{url}"
model = "seeker"

[[supporters]]
name = "alpha"
base_url = "{url}"
model = "alpha"

[[supporters]]
name = "beta"
base_url = "{url}"
model = "beta"
{beta}
[judge]
base_url = "{url}"
model = "judge"
""", encoding="utf-8")
    return path


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_documented_example_runs_as_written_and_prints_what_the_page_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # tempfile.mkdtemp() in the example lands in this test's folder
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    example = python_blocks(DOC.read_text(encoding="utf-8"))[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(DOC), "exec"), {"__name__": "__main__"})  # noqa: S102 - the documented example, run as written
    documented = re.search(r"It prints:\n\n```text\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert documented is not None
    assert printed.getvalue() == documented.group(1)
    assert len(list(tmp_path.glob("*/run.sqlite"))) == 1


async def test_run_exits_0_and_counts_the_episodes_and_scores(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=answer)
    seen: list[tuple[int, int]] = []

    def heard(progress: RunProgress) -> None:
        seen.append((progress.planned, progress.done))

    # the blocking call, as a script makes it, on its own thread: the fake server keeps serving on this loop
    result = await asyncio.to_thread(esc_eval.run, write_config(tmp_path, server.base_url), tmp_path / "run.sqlite",
                                     on_progress=heard, progress_interval=0.05)
    assert (result.exit_code, result.error, result.done, result.failed, result.skipped) == (0, None, 4, 0, 0)
    assert result.store == tmp_path / "run.sqlite" and result.failed_scores == 0 and not result.idle
    assert result.scores == {"alpha": dict.fromkeys(esc_eval.report(result.store)["rows"][0]["scores"], 75.0),
                             "beta": dict.fromkeys(esc_eval.report(result.store)["rows"][1]["scores"], 75.0)}
    assert seen and seen[-1] == (4, 4), "on_progress is called once more when the run has ended"
    with Store.open(result.store, readonly=True) as store:
        assert store.counts() == {"done": 4}


async def test_bad_input_is_exit_2_with_the_clis_one_line_and_writes_nothing(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=answer)
    config = write_config(tmp_path, server.base_url, extra="colour = 'blue'\n")
    store = tmp_path / "run.sqlite"
    result = await esc_eval.run_async(config, store)
    cli = await esc_eval_command("run", str(config), "--store", str(store), "--no-monitor")
    assert result.exit_code == cli.returncode == 2 and result.error is not None
    assert "colour" in result.error and f"esc-eval: error: {result.error}" in cli.stderr
    assert not store.exists() and server.requests == []

    good = write_config(tmp_path, server.base_url)
    for refused in (await esc_eval.run_async(good, store, retry_failed=True), await esc_eval.run_async(good, store, allow_config_change=True)):
        assert refused.exit_code == 2 and "needs --resume" in (refused.error or "") and not store.exists()
    assert (await esc_eval.run_async(good, tmp_path / "missing.sqlite", resume=True)).exit_code == 2


async def test_failed_episodes_exit_1_and_a_resume_through_the_api_retries_them(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    down = True
    server = await fake_server(responder=answer, fault_for=lambda body: "500" if down and body["model"] == "beta" else None)
    config = esc_eval.load_config(write_config(tmp_path, server.base_url, beta="max_attempts = 1\n"))
    store = tmp_path / "run.sqlite"

    first = await esc_eval.run_async(config, store)
    assert (first.exit_code, first.done, first.failed) == (1, 2, 2)
    assert set(first.scores) == {"alpha"}, "failed episodes are never scored"

    again = await esc_eval.run_async(config, store, resume=True)  # without retry_failed: they stay failed, and say so
    assert (again.exit_code, again.idle, again.earlier_failed, again.failed, again.skipped) == (1, True, 2, 2, 4)
    cli = await esc_eval_command("run", str(config.path), "--store", str(store), "--no-monitor", "--resume")
    assert cli.returncode == again.exit_code

    down = False
    healed = await esc_eval.run_async(config, store, resume=True, retry_failed=True)
    assert (healed.exit_code, healed.done, healed.failed, healed.skipped) == (0, 2, 0, 2)
    assert set(healed.scores) == {"alpha", "beta"}
    with Store.open(store, readonly=True) as reader:
        assert reader.counts() == {"done": 4}


async def test_run_async_shares_the_running_loop_and_run_says_to_use_it(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=answer)
    config = write_config(tmp_path, server.base_url)
    with pytest.raises(RuntimeError, match="run_async"):
        esc_eval.run(config, tmp_path / "sync.sqlite")
    assert not (tmp_path / "sync.sqlite").exists()
    ticks = 0

    async def ticking() -> None:  # the loop keeps serving other work (a notebook's, this fake server's) during the run
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    clock = asyncio.create_task(ticking())
    result = await esc_eval.run_async(config, tmp_path / "run.sqlite")
    clock.cancel()
    assert result.exit_code == 0 and result.done == 4 and ticks > 1


async def test_backend_objects_stand_in_for_a_roles_endpoint(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=answer)
    scripted = esc_eval.ScriptedBackend(lambda messages, params, model: "Have you tried sleeping more?")
    result = await esc_eval.run_async(write_config(tmp_path, server.base_url), tmp_path / "run.sqlite", backends={"beta": scripted})
    assert result.exit_code == 0 and len(scripted.requests) == 2  # beta's two episodes, one round each
    assert {body["model"] for body in server.requests} == {"seeker", "alpha", "judge"}
    with Store.open(result.store, readonly=True) as store:
        assert store.meta("backends")["beta"] == "override"


async def test_report_is_the_clis_json_with_the_same_options(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=lambda body: f"Score: {1 + len(body['messages'][-1]['content']) % 4}"
                               if body["model"] == "judge" else f"({body['model']}) {len(body['messages'])}")
    result = await esc_eval.run_async(write_config(tmp_path, server.base_url), tmp_path / "run.sqlite")
    assert result.exit_code == 0
    for options, flags in (({}, []), ({"compare": True, "power": 10.0}, ["--compare", "--power", "10"]),
                           ({"by": ["supporter", "language"], "supporter": "alpha"}, ["--by", "supporter,language", "--supporter", "alpha"])):
        cli = await esc_eval_command("report", str(result.store), "--format", "json", *flags)
        assert cli.returncode == 0, cli.stderr
        assert esc_eval.report(result.store, **options) == json.loads(cli.stdout), flags


def test_import_esc_eval_is_cheap_and_every_public_name_resolves() -> None:
    script = ("import sys, esc_eval\nheavy = [m for m in ('autogen_core', 'torch', 'aiohttp', 'numpy') if m in sys.modules]\n"
              "names = [n for n in esc_eval.__all__ if n not in ('agents', 'environments', 'roles', 'runs', 'testing')]\n"
              "missing = [n for n in names if getattr(esc_eval, n, None) is None]\n"
              "print(heavy, missing, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[] [] False", "import esc_eval loads nothing heavy; no public name loads torch"


def test_the_lazy_table_the_type_checking_imports_and_all_agree() -> None:
    tree = ast.parse((ROOT / "esc_eval" / "__init__.py").read_text(encoding="utf-8"))
    checked = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    lazy = set(esc_eval._HOME)  # noqa: SLF001 - the table under test
    assert lazy == checked - {"TYPE_CHECKING", "Any", "annotations"}
    assert set(esc_eval.__all__) == lazy | {"agents", "environments", "roles", "runs", "testing"}
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        esc_eval.nothing_here  # noqa: B018


def test_the_readme_snippet_names_only_what_the_api_has() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    snippet = python_blocks(section)[0]
    used = set(re.findall(r"esc_eval\.(\w+)", snippet))
    assert used and used <= set(esc_eval.__all__), used - set(esc_eval.__all__)
    assert "docs/api.md" in section


async def test_a_failing_progress_callback_stops_the_run_and_closes_the_store(tmp_path: Path) -> None:
    async with FakeOpenAIServer(responder=answer, delay=0.05) as server:
        def broken(progress: RunProgress) -> None:
            raise ValueError("callback bug")

        with pytest.raises(ValueError, match="callback bug"):
            await esc_eval.run_async(write_config(tmp_path, server.base_url), tmp_path / "run.sqlite", on_progress=broken,
                                     progress_interval=0.01)
    with Store.open(tmp_path / "run.sqlite", readonly=True) as store:
        assert store.last_run() is not None and store.last_run().status == "interrupted"  # type: ignore[union-attr]
