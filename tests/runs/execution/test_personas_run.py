"""Runs with personas: config, the cards x personas x supporters x repeats grid, state in the store,
the report by persona, the CLI's ``personas`` commands and a plugin persona found by its entry point."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.environments.behaviours import list_personas, load_behaviour
from esc_eval.roles.personas import PersonaError
from esc_eval.runs.analysis.report import build_report
from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.formats.archive import export_jsonl
from esc_eval.runs.store import Store
from esc_eval.testing.cli import ROOT, esc_eval, write_config

URL = "http://127.0.0.1:9/v1"
PLUGIN = ROOT / "tests" / "plugin_persona"


def config(seeker: dict[str, object] | None = None, *, repeats: int = 1, **cards: object):  # type: ignore[no-untyped-def]
    return parse_config({
        "run": {"rounds": 3, "concurrency": 8, "repeats": repeats},
        "cards": {"language": "en", "limit": 2, **cards},
        "seeker": {"base_url": URL, "model": "seeker", **(seeker or {})},
        "supporters": [{"name": "a", "base_url": URL, "model": "a"}, {"name": "b", "base_url": URL, "model": "b"}],
    }, "run.toml")


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seeker", "words"), [
    ({"persona": "guarded", "personas": ["terse"]}, "field 'personas': set either 'persona'"),
    ({"personas": []}, "field 'personas': must list at least one persona"),
    ({"personas": ["terse", "guarded", "terse"]}, "field 'personas': 'terse' is listed twice"),
    ({"personas": "terse"}, "field 'personas': must be a list of text values"),
    ({"personas": ["terse", 3]}, "field 'personas': must be a list of text values"),
    ({"persona": " "}, "field 'persona': a persona name must not be empty"),
    ({"role_break_retries": -1}, "field 'role_break_retries': must be at least 0"),
])
def test_persona_config_errors_name_the_field(seeker: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=f"run.toml: \\[seeker\\] {words}"):
        config(seeker)


def test_persona_is_shorthand_for_one_personas_entry() -> None:
    assert config().seeker.persona_names == ("default",)
    assert config({"persona": "terse"}).seeker.persona_names == ("terse",)
    assert config({"personas": ["terse", "guarded"]}).seeker.persona_names == ("terse", "guarded")
    # the new fields at their defaults leave the fingerprint (and so the resume) of older stores unchanged
    assert config().fingerprint() == config({"role_break_retries": 2}).fingerprint() != config({"role_break_retries": 1}).fingerprint()
    assert config().fingerprint() != config({"personas": ["terse"]}).fingerprint()


@pytest.mark.parametrize(("seeker", "field"), [
    ({"persona": "nobody"}, "persona"),
    ({"personas": ["guarded", "nobody"]}, "personas"),
    ({"persona": "missing.yaml"}, "persona"),
])
def test_unknown_persona_is_a_config_error_naming_the_field(seeker: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RunPlan.prepare(config(seeker))
    message = str(caught.value)
    assert message.startswith(f"run.toml: [seeker] field '{field}': ")
    assert ("nobody" in message and "guarded" in message) or "missing.yaml" in message


def test_invalid_persona_file_names_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ending: {after_unhelpful: zero}\n", encoding="utf-8")
    with pytest.raises(PersonaError, match=f"^{bad}: field 'ending.after_unhelpful'"):
        RunPlan.prepare(config({"persona": str(bad)}))
    english_only = tmp_path / "english.yaml"
    english_only.write_text("directives: {en: Keep it light.}\n", encoding="utf-8")
    RunPlan.prepare(config({"persona": str(english_only)}))
    with pytest.raises(PersonaError, match="field 'directives.zh': no text for language 'zh'"):
        RunPlan.prepare(config({"persona": str(english_only)}, language="zh"))


def test_two_personas_with_one_name_are_refused(tmp_path: Path) -> None:
    mine = tmp_path / "guarded.yaml"
    mine.write_text("openness: high\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="field 'personas': .*also named 'guarded'"):
        RunPlan.prepare(config({"personas": ["guarded", str(mine)]}))


def test_grid_is_cards_by_personas_by_supporters_by_repeats() -> None:
    plan = RunPlan.prepare(config({"personas": ["terse", "guarded", "default"]}, repeats=2))
    planned = [p for p, _ in plan.episodes()]
    assert len(planned) == 2 * 3 * 2 * 2 and len({p.key for p in planned}) == len(planned)
    assert [p.ordinal for p in planned] == list(range(len(planned)))
    assert [(p.card_index, p.persona, p.supporter) for p in planned[:7]] == [
        (0, "terse", "a"), (0, "terse", "b"), (0, "guarded", "a"), (0, "guarded", "b"), (0, "default", "a"), (0, "default", "b"),
        (1, "terse", "a"),
    ], "card-major, supporters round-robin"
    assert {p.repeat for p in planned[:12]} == {0}, "every card once before any repeat"
    assert all(f"/{p.persona}/" in p.key for p in planned)
    assert list(plan.behaviours) == ["terse", "guarded", "default"]


def test_one_persona_keeps_the_keys_of_before() -> None:
    planned = [p for p, _ in RunPlan.prepare(config()).episodes()]
    assert [p.key for p in planned] == [
        "a/default/00000-en-001/s0/r0", "b/default/00000-en-001/s0/r0", "a/default/00001-en-002/s0/r0", "b/default/00001-en-002/s0/r0",
    ]


# -- running ----------------------------------------------------------------------------------


def seeker_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    if "end your message with [END]" in messages[0]["content"]:
        return "Thanks. Bye. [END]"
    if len(messages) == 2 and "Stay in character: you are" not in messages[0]["content"]:
        return "As an AI, I cannot share feelings."  # every first seeker reply breaks the role; the reminder mends it
    return "I keep going over it at night."


def supporter_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return "That sounds so hard; I understand." if model == "a" else "Okay."


async def run(tmp_path: Path, personas: list[str], **seeker: object):  # type: ignore[no-untyped-def]
    plan = RunPlan.prepare(config({"personas": personas, **seeker}))
    store = Store.open(tmp_path / "run.sqlite", create=True)
    backends = {"seeker": ScriptedBackend(seeker_script, model="seeker"),
                "a": ScriptedBackend(supporter_script, model="a"), "b": ScriptedBackend(supporter_script, model="b")}
    result = await Runner(plan, store, backends=backends).run()
    return result, backends["seeker"]


async def test_a_run_with_personas_records_state_and_reports_by_persona(tmp_path: Path) -> None:
    personas = ["leaves-when-satisfied", "leaves-when-unheard", "default"]
    result, seeker = await run(tmp_path, personas)
    assert result.exit_code == 0 and result.progress.done == 2 * 3 * 2

    store = Store.open(tmp_path / "run.sqlite", readonly=True)
    episodes = {e.key: e for e in store.episodes()}
    outcomes = {(e.supporter, e.persona, e.outcome, e.reason) for e in episodes.values()}
    # supporter a is empathic: the satisfied persona leaves; b never is: the unheard persona leaves
    assert ("a", "leaves-when-satisfied", "terminated", "persona satisfied") in outcomes
    assert ("b", "leaves-when-unheard", "terminated", "persona unheard: 2 replies without empathy") in outcomes
    assert ("a", "default", "truncated", "max_rounds=3") in outcomes and ("b", "leaves-when-satisfied", "truncated", "max_rounds=3") in outcomes

    for row in store.turns():
        if row.role == "supporter":
            assert row.state is None
        else:
            state = json.loads(row.state)
            assert state["persona"] == episodes[row.episode_key].persona and "distress" in state
            if row.idx == 1:  # the first seeker request broke the role and was asked again
                assert state["role_break"]["retries"] == 1 and state["role_break"]["in_role"] is True
    assert all("As an AI" not in text for _, text in store.transcript(next(iter(episodes))))

    report = build_report(store, by=("persona",))
    assert [dict(r.group) for r in report.rows] == [{"persona": p} for p in personas]
    assert all(r.episodes_done == 4 for r in report.rows)
    exported = export_jsonl(store, tmp_path / "out")
    store.close_sync()
    first = json.loads(exported[0].read_text(encoding="utf-8").splitlines()[1])  # after the store line
    assert first["turns"][1]["state"] and first["turns"][0]["state"] is None  # the seeker has a state, the supporter none


async def test_role_break_retries_come_from_the_run_config(tmp_path: Path) -> None:
    _, seeker = await run(tmp_path, ["default"], role_break_retries=0)
    store = Store.open(tmp_path / "run.sqlite", readonly=True)
    first_seeker = [t for t in store.turns() if t.idx == 1]
    store.close_sync()
    assert first_seeker and all(t.text.startswith("As an AI") and json.loads(t.state)["role_break"]["in_role"] is False
                                for t in first_seeker)
    assert len(seeker.requests) == 4 * 3  # no retries


# -- the CLI and plugins ------------------------------------------------------------------------


def plugin_site(root: Path) -> Path:
    """A folder holding a ``.dist-info`` for the test plugin, made from its pyproject: on ``sys.path``
    (with ``tests/plugin_persona``), importlib.metadata finds the entry points as if it were installed."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    entry_points = project["entry-points"]["esc_eval.personas"]
    dist_info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(
        "[esc_eval.personas]\n" + "".join(f"{name} = {value}\n" for name, value in entry_points.items()), encoding="utf-8")
    return root


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = plugin_site(tmp_path / "site")
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("esc_eval_plugin_persona", None)


def test_plugins_are_listed_with_their_source(plugin: Path) -> None:
    found = {p.name: p for p in list_personas()}
    assert found["echoing"].source == "plugin esc-eval-plugin-persona (esc_eval_plugin_persona:Echoing)"
    assert found["echoing"].description.startswith("Repeats the listener's last words")
    assert found["stoic"].description.startswith("Calm on the surface")
    assert found["guarded"].source == "built-in"
    name, stoic = load_behaviour("stoic")
    assert name == "stoic" and stoic.persona.style.length == "short"  # extends the built-in terse


async def test_a_plugin_persona_runs(plugin: Path, tmp_path: Path) -> None:
    result, seeker = await run(tmp_path, ["echoing", "stoic"])
    assert result.exit_code == 0 and result.progress.done == 8
    prompts = [messages[0]["content"] for messages, _, _ in seeker.requests]
    assert any("Echo first: begin your reply with the listener's last words" in p for p in prompts)
    assert any("flat, factual voice" in p for p in prompts)
    store = Store.open(tmp_path / "run.sqlite", readonly=True)
    echoing = {e.key for e in store.episodes() if e.persona == "echoing"}
    states = [json.loads(t.state) for t in store.turns() if t.episode_key in echoing and t.role == "seeker"]
    store.close_sync()
    assert states and all(s["echoes"] >= 1 for s in states)


async def test_cli_personas_list_and_show(plugin: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "skeptic.yaml").write_text("description: Doubts talking helps.\nextends: guarded\nresistance: high\n", encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin), str(PLUGIN)])}
    listed = await esc_eval("personas", "list", "--dir", str(mine), env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.startswith("guarded ") and "built-in" in line for line in lines)
    assert any(line.startswith("skeptic ") and str(mine / "skeptic.yaml") in line and "Doubts talking helps." in line for line in lines)
    assert any(line.startswith("echoing ") and "plugin esc-eval-plugin-persona" in line for line in lines)
    assert any(line.startswith("stoic ") and "plugin" in line for line in lines)

    shown = await esc_eval("personas", "show", "guarded", "--rounds", "3", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("How you behave in this reply (round") == 3
    assert "Do not share any concrete detail" in shown.stdout and "So far you may share only" in shown.stdout
    zh = await esc_eval("personas", "show", "leaves-when-unheard", "--card-language", "zh", "--supporter", "neutral", env=env)
    assert zh.returncode == 0 and "这一轮的表现方式（第1轮）" in zh.stdout
    assert "the seeker leaves: terminated (persona unheard" in zh.stdout
    plugin_shown = await esc_eval("personas", "show", "echoing", "--rounds", "2", env=env)
    assert plugin_shown.returncode == 0 and "Echo first" in plugin_shown.stdout
    skeptic = await esc_eval("personas", "show", "skeptic", "--dir", str(mine), "--rounds", "1", env=env)
    assert skeptic.returncode == 0 and "resist advice" in skeptic.stdout

    unknown = await esc_eval("personas", "show", "nobody", env=env)
    assert unknown.returncode == 2 and unknown.stderr.startswith("esc-eval: error: unknown persona 'nobody'")


async def test_cli_run_with_an_unknown_persona_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", seeker_url=URL, supporters={"a": URL})
    path.write_text(path.read_text().replace('protocol = "default"', 'protocol = "default"\npersonas = ["guarded", "nobody"]'))
    store = tmp_path / "out" / "run.sqlite"
    result = await esc_eval("run", str(path), "--store", str(store), "--no-monitor")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"esc-eval: error: {path}: [seeker] field 'personas': unknown persona 'nobody': not a .yaml file, a built-in or a plugin"
        f" (known: {', '.join(sorted(p.name for p in list_personas() if p.source == 'built-in'))})"
    )
    assert not store.parent.exists()
