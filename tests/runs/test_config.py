import math
from pathlib import Path

import pytest

from esc_eval.runs.config import ConfigError, check_api_keys, load_config, parse_config

SEEKER = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
SUPPORTER = {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


def config(**sections: object) -> dict[str, object]:
    return {"seeker": dict(SEEKER), "supporters": [dict(SUPPORTER)], **sections}


def test_defaults_follow_esc_eval() -> None:
    c = parse_config(config())
    assert c.run.rounds == 5 and c.seeker.protocol == "default" and c.seeker.backend == "openai"
    assert c.judge is None and c.supporters[0].system_prompt is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (config(run={"rounds": "5"}), "[run] field 'rounds': expected int, got str '5'"),
        (config(run={"round": 5}), "[run]: unknown field 'round'"),
        (config(extra={}), "unknown section [extra]"),
        (config(run={"concurrency": 0}), "[run] field 'concurrency': must be at least 1"),
        (config(cards={"language": "fr"}), "[cards] field 'language': must be 'en' or 'zh'"),
        ({"supporters": [SUPPORTER]}, "missing section [seeker]"),
        ({"seeker": SEEKER}, "[[supporters]] must list at least one supporter"),
        ({"seeker": SEEKER, "supporters": [SUPPORTER, SUPPORTER]}, "[supporters[1]] field 'name': duplicate name 'a'"),
        ({"seeker": {"model": "m"}, "supporters": [SUPPORTER]}, "[seeker]: missing field 'base_url'"),
        ({"seeker": {**SEEKER, "backend": "tgi"}, "supporters": [SUPPORTER]}, "field 'backend': unknown backend 'tgi'"),
        ({"seeker": {**SEEKER, "base_url": "localhost:8000"}, "supporters": [SUPPORTER]}, "field 'base_url': must start with http"),
        ({"seeker": SEEKER, "supporters": [{**SUPPORTER, "name": "a b"}]}, "[supporters[0]] field 'name'"),
        (config(judge={"base_url": "http://x/v1", "model": "j", "models": {"fluency": 3}}), "[judge] field 'models'"),
        (config(judge={"base_url": "http://x/v1", "model": "j", "score_every_round": "yes"}), "field 'score_every_round': expected bool"),
    ],
)
def test_bad_values_name_the_field(raw: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "run.toml")
    assert str(err.value).startswith("run.toml: ")
    assert expected in str(err.value)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nrounds = = 5\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: malformed TOML"):
        load_config(path)


def test_judge_only_config_needs_just_the_judge() -> None:
    c = parse_config({"judge": {"base_url": "http://x/v1", "model": "j", "models": {"fluency": "fluency_en"}}}, judge_only=True)
    assert c.judge is not None and c.judge.models == {"fluency": "fluency_en"}
    with pytest.raises(ConfigError, match="missing section \\[judge\\]"):
        parse_config(config(), judge_only=True)


def test_fingerprint_ignores_operational_settings_only() -> None:
    base = parse_config(config()).fingerprint()
    assert parse_config(config(run={"concurrency": 500, "store": "x.sqlite"})).fingerprint() == base
    assert parse_config({"seeker": {**SEEKER, "max_connections": 3}, "supporters": [SUPPORTER]}).fingerprint() == base
    assert parse_config({"seeker": {**SEEKER, "max_retry_time": 60}, "supporters": [SUPPORTER]}).fingerprint() == base
    assert parse_config(config(run={"rounds": 4})).fingerprint() != base
    assert parse_config(config(run={"seed": 1})).fingerprint() != base
    assert parse_config({"seeker": SEEKER, "supporters": [{**SUPPORTER, "model": "other"}]}).fingerprint() != base


def test_judge_samples_need_sampling() -> None:
    judge = {"base_url": "http://x/v1", "model": "j"}
    assert parse_config({"judge": judge}, judge_only=True).judge.samples == 1
    assert parse_config({"judge": {**judge, "samples": 3, "temperature": 0.7}}, judge_only=True).judge.samples == 3
    with pytest.raises(ConfigError, match=r"j\.toml: \[judge\] field 'samples': must be at least 1, got 0"):
        parse_config({"judge": {**judge, "samples": 0}}, "j.toml", judge_only=True)
    with pytest.raises(ConfigError, match=r"\[judge\] field 'samples': 3 samples need a 'temperature' above 0"):
        parse_config({"judge": {**judge, "samples": 3}}, "j.toml", judge_only=True)


def test_max_retry_time_must_be_positive() -> None:
    assert parse_config(config(seeker={**SEEKER, "max_retry_time": 30})).seeker.max_retry_time == 30.0
    assert parse_config(config()).seeker.max_retry_time == 900.0
    with pytest.raises(ConfigError, match="\\[seeker\\] field 'max_retry_time': must be positive, got 0"):
        parse_config(config(seeker={**SEEKER, "max_retry_time": 0}))


@pytest.mark.parametrize("section, field", [("run", "cost_limit"), ("run", "episode_timeout"), ("seeker", "max_retry_time"),
                                            ("seeker", "timeout"), ("seeker", "temperature")])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_number_field_refuses_inf_and_nan_naming_the_field(section: str, field: str, value: float) -> None:
    """TOML has ``inf`` and ``nan``: neither is an amount, and the store's copy of the config (JSON) cannot hold them."""
    raw = config(run={field: value}) if section == "run" else config(seeker={**SEEKER, field: value})
    with pytest.raises(ConfigError, match=rf"\[{section}\] field '{field}': must be (a finite number|positive|in .*), got {value}"):
        parse_config(raw)


def test_an_api_key_variable_that_is_not_set_names_section_and_variable_never_a_value() -> None:
    second = {**SUPPORTER, "name": "b", "api_key_env": "B_KEY"}
    c = parse_config({"seeker": {**SEEKER, "api_key_env": "SEEKER_KEY"}, "supporters": [SUPPORTER, second],
                      "judge": {"base_url": "http://127.0.0.1:9/v1", "model": "j", "api_key_env": "JUDGE_KEY"}}, "run.toml")
    check_api_keys(c, {"SEEKER_KEY": "sk-1", "B_KEY": "sk-2", "JUDGE_KEY": "sk-3"})
    with pytest.raises(ConfigError) as err:
        check_api_keys(c, {"SEEKER_KEY": "sk-1", "JUDGE_KEY": "sk-3"})
    assert str(err.value) == "run.toml: [supporters[1]] field 'api_key_env': environment variable B_KEY is not set"
    with pytest.raises(ConfigError, match="\\[judge\\] field 'api_key_env': environment variable JUDGE_KEY"):
        check_api_keys(c, {"SEEKER_KEY": "sk-1", "B_KEY": "sk-2", "JUDGE_KEY": "  "})  # blank is not a key
    with pytest.raises(ConfigError, match="\\[seeker\\]") as err:
        check_api_keys(c, {"B_KEY": "sk-2", "JUDGE_KEY": "sk-3"})
    assert "sk-" not in str(err.value)


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ({"termination": [{"name": "max_turns"}]},
         "x.toml: [run] field 'termination' 0: unknown termination 'max_turns' (known: max_rounds, max_tokens, timeout, end_token)"),
        ({"termination": [{"name": "max_rounds", "rounds": 2}, {"name": "end_token", "colour": 1}]},
         "x.toml: [run] field 'termination' 1: termination 'end_token': got an unexpected keyword argument 'colour'"),
        ({"termination": [{"rounds": 2}]}, "x.toml: [run] field 'termination' 0: a termination needs a 'name'"),
        ({"termination": "max_rounds"}, "x.toml: [run] field 'termination': must be a list of tables"),
        ({"termination": [{"name": "max_rounds", "rounds": 2}], "end_token": "[END]"},
         "x.toml: [run] field 'termination': replaces 'end_token'; set one or the other"),
        ({"turn_policy": {"name": "round_robin"}}, "x.toml: [run] field 'turn_policy': unknown turn policy 'round_robin' (known: alternating)"),
        ({"turn_policy": "alternating"}, "x.toml: [run] field 'turn_policy': must be a table"),
    ],
)
def test_named_extensions_unknown_or_misused_are_one_line_errors(run: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(run=run), "x.toml")
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_an_unknown_backend_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"\[seeker\] field 'backend': unknown backend 'llamafile' \(known: openai, transformers, vllm, auto\)"):
        parse_config({"seeker": {**SEEKER, "backend": "llamafile"}, "supporters": [SUPPORTER]})


def test_shorthands_are_specs_and_old_fingerprints_hold() -> None:
    short = parse_config(config(run={"rounds": 3, "end_token": "[END]", "episode_timeout": 60.0}))
    assert short.run.termination_specs() == [
        {"name": "end_token", "token": "[END]"}, {"name": "max_rounds", "rounds": 3}, {"name": "timeout", "seconds": 60.0}]
    assert short.run.turn_policy_spec() == {"name": "alternating", "opener": True}
    # the fingerprints stores were started with before [run] termination/turn_policy existed
    assert parse_config(config()).fingerprint() == "eea2648d6a6ae037"
    assert parse_config(config(run={"end_token": "[END]", "max_episode_tokens": 100})).fingerprint() == "6988f230a286c9bf"
    named = parse_config(config(run={"termination": [{"name": "max_rounds", "rounds": 5}]}))
    assert named.fingerprint() != parse_config(config()).fingerprint()  # the spec decides results: it is fingerprinted
