"""Paths inside a config resolve against the config file's folder, not the current directory."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from esc_eval.runs.config import load_config
from esc_eval.testing.cli import esc_eval

CARD = {"base": "Age: 30\nGender: Female\nOccupation: Nurse\nProblem: Night shifts leave her exhausted.",
        "res": "工作学习", "source": "ours", "language": "english", "id": 1}


def _config(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "eval.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf" / "adapters").mkdir(parents=True)
    (tmp_path / "conf" / "model-folder").mkdir()
    path = _config(tmp_path / "conf", """
[run]
store = "runs/x.sqlite"
[cards]
path = "data/cards.json"
[seeker]
base_url = "http://127.0.0.1:9/v1"
model = "org/seeker-model"
protocol = "protocols/esc.json"
personas = ["guarded", "personas/mine.yaml"]
[[supporters]]
name = "local"
backend = "transformers"
model = "model-folder"
lora = {style = "adapters/style", abs = "/opt/adapters/abs"}
[[supporters]]
name = "hub"
backend = "transformers"
model = "org/not-a-folder-here"
[judge]
base_url = "http://127.0.0.1:9/v1"
model = "judge"
profile = "default"
""")
    config = load_config(path)
    here = tmp_path / "conf"
    assert config.run.store == str(here / "runs/x.sqlite")
    assert config.cards.path == str(here / "data/cards.json")
    assert config.seeker.protocol == str(here / "protocols/esc.json")
    assert config.seeker.personas == ("guarded", str(here / "personas/mine.yaml")), "a bare name stays a built-in name"
    assert config.seeker.model == "org/seeker-model", "a served model's name is not a path"
    local, hub = config.supporters
    assert local.model == str(here / "model-folder"), "a local model folder that exists beside the config"
    assert hub.model == "org/not-a-folder-here", "no such folder: a hub id, left alone"
    assert local.lora == {"style": str(here / "adapters/style"), "abs": "/opt/adapters/abs"}
    assert config.judge is not None and config.judge.profile == "default"
    assert config.to_dict()["cards"]["path"] == str(here / "data/cards.json"), "the store records the file actually read"


def test_fingerprint_reads_the_paths_as_written(tmp_path: Path) -> None:
    """The same config in two folders (or read from two working directories) is the same run."""
    body = ('[cards]\npath = "cards.json"\n[seeker]\nbase_url = "http://a/v1"\nmodel = "m"\n'
            '[[supporters]]\nname = "a"\nbase_url = "http://a/v1"\nmodel = "m"\n')
    one, two = load_config(_config(tmp_path / "one", body)), load_config(_config(tmp_path / "two", body))
    assert one.cards.path != two.cards.path
    assert one.fingerprint() == two.fingerprint()
    other = load_config(_config(tmp_path / "three", body.replace("cards.json", "other.json")))
    assert other.fingerprint() != one.fingerprint()


async def test_a_run_from_another_directory_reads_and_writes_beside_the_config(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    conf = tmp_path / "project"
    (conf / "data").mkdir(parents=True)
    (conf / "data" / "cards.json").write_text(json.dumps([CARD]), encoding="utf-8")
    (conf / "personas").mkdir()
    (conf / "personas" / "quiet.yaml").write_text("extends: guarded\ndescription: our own quiet persona\n", encoding="utf-8")
    path = _config(conf, f"""
[run]
rounds = 1
store = "runs/out.sqlite"
[cards]
path = "data/cards.json"
[seeker]
base_url = "{server.base_url}"
model = "seeker"
persona = "personas/quiet.yaml"
[[supporters]]
name = "a"
base_url = "{server.base_url}"
model = "a"
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = await esc_eval("run", str(path), "--no-monitor", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    store = conf / "runs" / "out.sqlite"
    assert store.is_file() and not any(elsewhere.iterdir()), "the store goes beside the config, nothing into the cwd"
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT card_id, persona, status FROM episodes").fetchall() == [("1", "quiet", "done")]
