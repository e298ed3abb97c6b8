"""The command line: bad input is exit code 2 with one line naming the place, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc_eval.testing.cli import esc_eval, write_config


async def run_bad(tmp_path: Path, config: Path, *extra: str) -> str:
    store = tmp_path / "out" / "run.sqlite"
    result = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", *extra)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esc-eval: error: "), result.stderr
    assert not (tmp_path / "out").exists(), "nothing may be written on bad input"
    return lines[0]


async def test_bad_config_field(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"})
    config.write_text(config.read_text().replace("rounds = 5", 'rounds = "five"'))
    line = await run_bad(tmp_path, config)
    assert str(config) in line and "[run] field 'rounds'" in line and "'five'" in line


async def test_missing_config_file(tmp_path: Path) -> None:
    line = await run_bad(tmp_path, tmp_path / "nope.toml")
    assert "nope.toml" in line and "cannot read" in line


async def test_card_file_missing_field(tmp_path: Path) -> None:
    cards = tmp_path / "cards.json"
    cards.write_text('[{"base": "Age: 3", "res": "家庭生活", "source": "x", "language": "english", "id": 1},'
                     ' {"res": "家庭生活", "source": "x", "language": "english", "id": 2}]', encoding="utf-8")
    config = write_config(tmp_path / "c.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"}, cards=cards)
    line = await run_bad(tmp_path, config)
    assert str(cards) in line and "card 2" in line and "'base'" in line


async def test_unknown_protocol(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"}, protocol="no-such")
    line = await run_bad(tmp_path, config)
    assert "no-such" in line and "default" in line


async def test_mixed_languages_when_one_is_required(tmp_path: Path, shared: Path) -> None:
    config = write_config(tmp_path / "c.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"},
                          cards=shared / "test_zh.json", language="en")
    line = await run_bad(tmp_path, config)
    assert "test_zh.json" in line and "card 1" in line and "'language'" in line


async def test_existing_store_without_resume_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"})
    store = tmp_path / "s.sqlite"
    store.write_bytes(b"")
    result = await esc_eval("run", str(config), "--store", str(store), "--no-monitor")
    assert result.returncode == 2 and "--resume" in result.stderr
    assert store.read_bytes() == b""


async def test_export_of_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    result = await esc_eval("export", str(junk), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "junk.sqlite" in result.stderr
    assert not (tmp_path / "out").exists()


async def test_cards_validate(tmp_path: Path, shared: Path) -> None:
    ok = await esc_eval("cards", "validate", str(shared / "card_high_en.json"))
    assert ok.returncode == 0 and "331 valid cards" in ok.stdout and "family_life" in ok.stdout
    bad = tmp_path / "empty.jsonl"
    bad.write_text("")
    result = await esc_eval("cards", "validate", str(bad))
    assert result.returncode == 2 and "empty.jsonl" in result.stderr and "empty" in result.stderr


def test_the_failed_episodes_hint_is_the_callers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from esc_eval.runs.cli.run import _summary
    from esc_eval.runs.execution.progress import RunProgress

    _summary(RunProgress(planned=3, done=2, failed=1), tmp_path / "s.sqlite", "a demo is not resumed: run it again")
    out = capsys.readouterr().out
    assert "hint: 1 failed episodes remain in the store; a demo is not resumed: run it again" in out
    assert "--retry-failed" not in out
    _summary(RunProgress(planned=3, done=3), tmp_path / "s.sqlite", "never shown")
    assert "hint:" not in capsys.readouterr().out


async def test_resume_of_a_finished_store_has_nothing_to_do_and_starts_nothing(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    config = write_config(tmp_path / "c.toml", seeker_url=server.base_url, supporters={"a": server.base_url}, rounds=1)
    store = tmp_path / "s.sqlite"
    assert (await esc_eval("run", str(config), "--store", str(store), "--no-monitor")).returncode == 0
    sent = len(server.requests)
    again = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", "--resume")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    # no cluster at this address: joining it would fail, so exit 0 proves Ray was never started
    ray = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", "--resume", "--ray", "127.0.0.1:9", timeout=60)
    assert ray.returncode == 0 and "nothing to do" in ray.stdout, ray.stdout + ray.stderr
    assert len(server.requests) == sent


async def test_an_unknown_termination_detector_is_exit_2_naming_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[run]\ntermination = [{name = "max_turns", turns = 3}]\n\n[seeker]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n\n'
                      '[[supporters]]\nname = "a"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n', encoding="utf-8")
    line = await run_bad(tmp_path, config)
    assert line == (f"esc-eval: error: {config}: [run] field 'termination' 0: unknown termination 'max_turns' "
                    "(known: max_rounds, max_tokens, timeout, end_token)")


async def test_plugins_list_shows_every_kind_built_in() -> None:
    result = await esc_eval("plugins", "list")
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:3]) for line in result.stdout.splitlines() if not line.startswith("turn policy")}
    for kind, name in [("backend", "openai"), ("backend", "vllm"), ("termination", "max_rounds"), ("termination", "end_token"),
                       ("persona", "default"), ("persona", "terse")]:
        assert (kind, name, "built-in") in rows, result.stdout
    assert any(line.split()[:4] == ["turn", "policy", "alternating", "built-in"] for line in result.stdout.splitlines())
    only = await esc_eval("plugins", "list", "--kind", "backend")
    assert {line.split()[0] for line in only.stdout.splitlines()} == {"backend"}
