"""A run with ``backend = "auto"``: the choice is printed and kept in the store's meta; the fingerprint keeps ``auto``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from tests.agents.backends.test_auto import fake_vllm

CONFIG = """
[run]
rounds = 1
concurrency = 2
[cards]
language = "en"
limit = 1
[seeker]
backend = "auto"
model = "{model}"
max_tokens = 4
[[supporters]]
name = "sup"
backend = "auto"
model = "{model}"
max_tokens = 4
"""


async def test_the_store_records_what_auto_chose_and_the_fingerprint_does_not_depend_on_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vllm(monkeypatch, True)  # vllm "installed" but not importable here: its engine fails at start, fast
    config = parse_config({"run": {"rounds": 1, "concurrency": 2}, "cards": {"language": "en", "limit": 2},
                           "seeker": {"backend": "auto", "model": str(tmp_path)},
                           "supporters": [{"name": "sup", "backend": "auto", "model": str(tmp_path)}]})
    plan = RunPlan.prepare(config)
    store = Store.create(tmp_path / "s.sqlite", config=config.to_dict(), fingerprint=plan.fingerprint())
    await Runner(plan, store, backends=None).run()
    with Store.open(tmp_path / "s.sqlite", readonly=True) as done:
        assert done.meta("backends") == {"seeker": "vllm", "sup": "vllm"}
        assert done.meta("config")["seeker"]["backend"] == "auto"
        assert done.meta("fingerprint") == plan.fingerprint()
    fake_vllm(monkeypatch, False)
    assert RunPlan.prepare(config).fingerprint() == plan.fingerprint()  # a resume elsewhere is the same plan


async def test_the_cli_prints_the_choice_once_per_engine(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()  # loading it fails at once: the run's episodes fail, the choice is still recorded
    path = tmp_path / "auto.toml"
    path.write_text(CONFIG.format(model=tmp_path / "model"))
    out = await esc_eval("run", str(path), "--store", str(tmp_path / "s.sqlite"), env={"HF_HUB_OFFLINE": "1"})
    chosen, why = ("vllm", "vllm installed") if importlib.util.find_spec("vllm") else ("transformers", "vllm not installed")
    assert out.stderr.count("backend auto") == 1, out.stderr
    assert f"esc-eval: seeker: backend auto -> {chosen} ({why})" in out.stderr
    with Store.open(tmp_path / "s.sqlite", readonly=True) as done:
        assert done.meta("backends") == {"seeker": chosen, "sup": chosen}


@pytest.mark.parametrize(("seeker", "message"), [
    ('backend = "automatic"\nmodel = "m"', "[seeker] field 'backend': unknown backend 'automatic'"),
    ('backend = "auto"\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"', "[seeker] field 'base_url': backend 'auto' runs the model in this process"),
])
async def test_bad_backend_values_exit_2_with_one_line_and_no_store(tmp_path: Path, seeker: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[seeker]\n{seeker}\n[[supporters]]\nname = "sup"\nbackend = "auto"\nmodel = "m"\n')
    out = await esc_eval("run", str(path), "--store", str(tmp_path / "s.sqlite"))
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "s.sqlite").exists()
