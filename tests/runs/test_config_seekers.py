"""``[[seekers]]``: several named seekers in one config; one ``[seeker]`` keeps its keys, seeds and fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.testing.cli import esc_eval

URL = "http://127.0.0.1:9/v1"
SEEKER = {"base_url": URL, "model": "sim"}
SUPPORTERS = [{"name": "a", "base_url": URL, "model": "a"}, {"name": "b", "base_url": URL, "model": "b"}]


def seekers(*names: str, **extra: object) -> list[dict[str, object]]:
    return [{"name": name, "base_url": URL, "model": f"{name}-model", **extra} for name in names]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"seeker": SEEKER, "seekers": seekers("x", "y"), "supporters": SUPPORTERS}, "sections [seeker] and [[seekers]] both given"),
    ({"seekers": seekers("x", "x"), "supporters": SUPPORTERS}, "[seekers[1]] field 'name': duplicate name 'x'"),
    ({"seekers": [SEEKER], "supporters": SUPPORTERS}, "[seekers[0]] field 'name': must be a non-empty name"),
    ({"seekers": seekers("a b"), "supporters": SUPPORTERS}, "[seekers[0]] field 'name': must be a non-empty name"),
    ({"seekers": [], "supporters": SUPPORTERS}, "[[seekers]] must list at least one seeker"),
    ({"seekers": [{"name": "x", "model": "m"}], "supporters": SUPPORTERS}, "[seekers[0]]: missing field 'base_url'"),
    ({"seekers": seekers("x", personas=["default", "default"]), "supporters": SUPPORTERS}, "'default' is listed twice"),
])
def test_bad_seekers_are_one_line_errors(raw: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "run.toml")
    assert str(err.value).startswith("run.toml: ") and expected in str(err.value)


async def test_both_sections_exit_2_naming_the_file_and_both_sections(tmp_path: Path) -> None:
    config = tmp_path / "both.toml"
    config.write_text(f'[seeker]\nbase_url = "{URL}"\nmodel = "m"\n\n[[seekers]]\nname = "x"\nbase_url = "{URL}"\nmodel = "m"\n\n'
                      f'[[supporters]]\nname = "a"\nbase_url = "{URL}"\nmodel = "a"\n', encoding="utf-8")
    done = await esc_eval("run", str(config), "--store", str(tmp_path / "s.sqlite"), "--no-monitor")
    assert done.returncode == 2
    assert str(config) in done.stderr and "[seeker]" in done.stderr and "[[seekers]]" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.sqlite").exists()


def test_one_seeker_keeps_the_keys_seeds_and_fingerprint_of_stores_made_before_seekers() -> None:
    """The values are what esc-eval computed before ``[[seekers]]`` existed: old stores still resume."""
    config = parse_config({"run": {"rounds": 3, "seed": 7}, "cards": {"language": "en", "limit": 2},
                           "seeker": {**SEEKER, "personas": ["default", "guarded"]}, "supporters": SUPPORTERS})
    plan = RunPlan.prepare(config)
    planned = [p for p, _ in plan.episodes()]
    assert [(p.key, p.seed, p.ordinal) for p in planned[:5]] == [
        ("a/default/00000-en-001/s7/r0", 697496449, 0), ("b/default/00000-en-001/s7/r0", 1052309179, 1),
        ("a/guarded/00000-en-001/s7/r0", 1050045820, 2), ("b/guarded/00000-en-001/s7/r0", 1493708705, 3),
        ("a/default/00001-en-002/s7/r0", 2167655502, 4)]
    # The plan's fingerprint also hashes the personas' text: it was 2dcb40dd6ebeeaf3 until the base persona
    # got its listener role-break cues (a store made before resumes with --allow-config-change).
    assert (config.fingerprint(), plan.fingerprint()) == ("9619edb4db3fd3cf", "dd0f1832e06e04a1")
    assert {p.seeker for p in planned} == {"sim"}  # the store records the model as the seeker


def test_one_listed_seeker_plans_as_one_seeker_section() -> None:
    one = parse_config({"seekers": seekers("x"), "supporters": SUPPORTERS})
    assert one.seeker.name == "x" and one.seeker_sections == (one.seeker,)
    planned = [p for p, _ in RunPlan.prepare(one).episodes()]
    assert not planned[0].key.startswith("x/") and {p.seeker for p in planned} == {"x"}


def test_seekers_carry_their_own_protocol_personas_and_decoding() -> None:
    role = {"name": "role", "base_url": URL, "model": "esc-role", "protocol": "default", "personas": ["default", "guarded"]}
    plain = {"name": "plain", "base_url": URL, "model": "llm", "temperature": 0.7, "role_break_retries": 0}
    config = parse_config({"cards": {"language": "en", "limit": 2}, "seekers": [role, plain], "supporters": SUPPORTERS})
    plan = RunPlan.prepare(config)
    planned = [p for p, _ in plan.episodes()]
    assert len(planned) == 2 * (2 + 1) * 2  # cards x (role's two personas + plain's one) x supporters
    assert {(p.seeker, p.persona) for p in planned} == {("role", "default"), ("role", "guarded"), ("plain", "default")}
    assert all(p.key.startswith(f"{p.seeker}/") for p in planned)
    assert [s.role for s in plan.seeker_plans()] == ["seeker:role", "seeker:plain"]
    assert plan.role_break(config.seekers[1]).retries == 0
    changed = parse_config({"cards": {"language": "en", "limit": 2}, "seekers": [role, {**plain, "temperature": 0.9}],
                            "supporters": SUPPORTERS})
    assert changed.fingerprint() != config.fingerprint(), "a seeker's decoding decides results"


def test_the_json_schema_takes_seekers_or_seeker_never_both() -> None:
    import jsonschema

    from esc_eval.runs.config_schema import config_schema

    validator = jsonschema.Draft202012Validator(config_schema())
    listed = {"seekers": seekers("x", "y"), "supporters": SUPPORTERS}
    parse_config(listed)
    assert list(validator.iter_errors(listed)) == []
    for refused in ({**listed, "seeker": SEEKER}, {"seekers": [SEEKER], "supporters": SUPPORTERS}, {"supporters": SUPPORTERS}):
        with pytest.raises(ConfigError):
            parse_config(refused)
        assert list(validator.iter_errors(refused)), refused
