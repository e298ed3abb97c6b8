"""`esc-eval judge` with ESC-Eval's ESC-RANK profile sends ESC-Eval's exact prompts to the mapped adapters."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest

from esc_eval.runs.formats.judging import TranscriptError, read_transcripts
from esc_eval.testing.cli import esc_eval

SUPPORTER, SEEKER = "AI assistant：", "ESC-Role："


def esc_eval_prompt(rank: dict[str, Any], dimension: dict[str, str], language: str, lines: list[str]) -> str:
    """ESC-Eval's assembly, re-implemented from the file's own description."""
    assembly = rank["assembly"]
    dialogue = assembly["dialogue_join"].join(lines)
    for old, new in assembly["dialogue_rewrites"]:
        dialogue = dialogue.replace(old, new)
    return (assembly["prompt"]
            .replace("{rubric}", dimension[f"rubric_{language}"])
            .replace("{name_in_prompt}", dimension["name_in_prompt"])
            .replace("{dialogue_stripped}", dialogue.strip()))


def label_for(body: dict[str, Any]) -> str:
    """A deterministic label per request, phrased so ESC-Eval's parser finds it."""
    return str(zlib.crc32(json.dumps(body["messages"]).encode()) % 5)


async def test_judge_sends_esc_eval_prompts_and_writes_the_labels(tmp_path: Path, shared: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=label_for)
    rank = json.loads((shared / "esc_rank_prompts.json").read_text(encoding="utf-8"))
    result = {
        "0": [SUPPORTER + "Hello, I'm your personal assistant. You can confide in me!"]
             + [(SEEKER if i % 2 == 0 else SUPPORTER) + f"line {i} about AI assistant stuff " for i in range(10)],
        "1": [SUPPORTER + "Hello!", SEEKER + "  I lost my job.  ", SUPPORTER + "I'm sorry to hear that."],
    }
    transcripts = tmp_path / "result_llama3_en.json"
    transcripts.write_text(json.dumps(result, ensure_ascii=False, indent=4), encoding="utf-8")
    config = tmp_path / "judge.toml"
    models = "\n".join(f'{d["key"]} = "{d["key"]}_{{lang}}"' for d in rank["dimensions"])
    config.write_text(
        f'[judge]\nprofile = "{shared / "esc_rank_prompts.json"}"\nbase_url = "{server.base_url}"\nmodel = "internlm2"\n'
        f"max_tokens = 8\n\n[judge.models]\n{models}\n", encoding="utf-8")
    out = tmp_path / "score_llama3_en.json"
    store = tmp_path / "judged.sqlite"
    done = await esc_eval("judge", str(transcripts), "--config", str(config), "--out", str(out), "--store", str(store))
    assert done.returncode == 0, done.stderr

    assert len(server.requests) == 2 * 7
    expected_labels: dict[str, dict[str, int]] = {"0": {}, "1": {}}
    for key, lines in result.items():
        for dim in rank["dimensions"]:
            wanted = [
                {"role": "system", "content": rank["assembly"]["system_prompt"]},
                {"role": "user", "content": esc_eval_prompt(rank, dim, "en", lines)},
            ]
            matches = [b for b in server.requests if b["messages"] == wanted]
            assert len(matches) == 1, f"no request with ESC-Eval's exact prompt for {key}/{dim['key']}"
            assert matches[0]["model"] == f"{dim['key']}_en"
            assert matches[0].get("temperature") == 0.0
            expected_labels[key][dim["key"]] = int(label_for(matches[0]))
    scores = json.loads(out.read_text(encoding="utf-8"))
    assert scores == expected_labels
    assert list(scores["0"]) == [d["key"] for d in rank["dimensions"]]
    report = await esc_eval("report", str(store), "--format", "json")
    row = json.loads(report.stdout)["rows"][0]
    assert row["group"] == {"supporter": "llama3"} and row["episodes"]["done"] == 2
    labels = [expected_labels[k]["fluency"] for k in ("0", "1")]
    assert row["scores"]["fluency"]["value"] == sum(labels) / 2 / 4 * 100


async def test_judge_detects_chinese_and_rejects_bad_transcripts(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=lambda body: "Score: 2")
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "j"\n', encoding="utf-8")
    transcripts = tmp_path / "dialogues.json"
    dialogue = [SUPPORTER + "你好，我在这里听你说。", SEEKER + "我最近工作压力很大，睡不着。"]
    transcripts.write_text(json.dumps({"0": dialogue}, ensure_ascii=False), encoding="utf-8")
    done = await esc_eval("judge", str(transcripts), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["0"]["overall"] == 2
    assert "支持者：" in server.requests[0]["messages"][-1]["content"]  # the default profile's Chinese prefixes

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": ["Speaker: hello"]}), encoding="utf-8")
    failed = await esc_eval("judge", str(bad), "--config", str(config))
    assert failed.returncode == 2 and "bad.json" in failed.stderr and "'0'" in failed.stderr


def test_a_jsonl_export_line_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    export = tmp_path / "episodes.jsonl"
    export.write_text(json.dumps({"key": "k0", "turns": [{"role": "supporter", "text": "Hi."}]}) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"episodes\.jsonl: line 2: expected a JSON object, got list"):
        read_transcripts(export)
    export.write_text("{broken\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"episodes\.jsonl: line 1: not valid JSON"):
        read_transcripts(export)


async def test_judge_store_keeps_the_judge_model_raw_replies_and_failures(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=lambda body: f"Score: 2 (from {body['model']})")
    server.inject("500")  # the first judge request fails, and with max_attempts = 1 it stays failed
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "judge-7b"\nmax_attempts = 1\nmax_connections = 1\n',
                      encoding="utf-8")
    transcripts = tmp_path / "result_llama3_en.json"
    transcripts.write_text(json.dumps({"0": [SUPPORTER + "Hello!", SEEKER + "I lost my job.", SUPPORTER + "I'm sorry."]}), encoding="utf-8")
    store = tmp_path / "judged.sqlite"
    done = await esc_eval("judge", str(transcripts), "--config", str(config), "--store", str(store))
    assert done.returncode == 1 and "1 judgements failed" in done.stderr and f"kept as failed in {store}" in done.stderr
    assert "1 dialogues and 7 judgements of llama3 (en); skipped 0 already in the store" in done.stdout

    conn = sqlite3.connect(store)
    rows = conn.execute("SELECT dimension, label, raw, model, status, error FROM scores ORDER BY dimension").fetchall()
    conn.close()
    failed = [r for r in rows if r[4] == "failed"]
    assert len(rows) == 7 and len(failed) == 1
    assert failed[0][1] is None and failed[0][2] is None and "500" in failed[0][5] and failed[0][3] == "judge-7b"
    assert all(r[1:4] == (2, "Score: 2 (from judge-7b)", "judge-7b") and r[5] is None for r in rows if r[4] == "ok")

    again = await esc_eval("judge", str(transcripts), "--config", str(config), "--store", str(store))
    assert again.returncode == 0 and "0 dialogues and 0 judgements of llama3 (en); skipped 1 already in the store" in again.stdout


async def test_judge_store_checks_the_file_name_before_judging(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=lambda body: "Score: 2")
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "j"\n', encoding="utf-8")
    transcripts = tmp_path / "dialogues.json"
    transcripts.write_text(json.dumps({"0": [SUPPORTER + "Hello!", SEEKER + "Hi."]}), encoding="utf-8")
    done = await esc_eval("judge", str(transcripts), "--config", str(config), "--store", str(tmp_path / "s.sqlite"))
    assert done.returncode == 2 and "dialogues.json: cannot tell supporter and language" in done.stderr
    assert server.requests == [] and not (tmp_path / "s.sqlite").exists()
    named = await esc_eval("judge", str(transcripts), "--config", str(config), "--store", str(tmp_path / "s.sqlite"), "--supporter", "gpt-4")
    assert named.returncode == 0 and "1 dialogues and 7 judgements of gpt-4 (en)" in named.stdout, named.stderr


async def test_judge_with_samples_keeps_every_sample_and_writes_the_first(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=lambda body: f"Score: {body['seed'] + 1}")
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "j"\nsamples = 2\ntemperature = 0.5\n', encoding="utf-8")
    transcripts = tmp_path / "result_llama3_en.json"
    transcripts.write_text(json.dumps({"0": [SUPPORTER + "Hello!", SEEKER + "I lost my job.", SUPPORTER + "I'm sorry."]}), encoding="utf-8")
    out, store = tmp_path / "scores.json", tmp_path / "judged.sqlite"
    done = await esc_eval("judge", str(transcripts), "--config", str(config), "--out", str(out), "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert set(json.loads(out.read_text(encoding="utf-8"))["0"].values()) == {1}        # ESC-Eval's one label: sample 0
    conn = sqlite3.connect(store)
    rows = conn.execute("SELECT sample, label FROM scores").fetchall()
    conn.close()
    assert sorted(set(rows)) == [(0, 1), (1, 2)] and len(rows) == 14


def test_judge_actions_score_by_default_and_train_is_a_sub_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`judge FILE` and `judge score FILE` are one command; `judge train` parses its own options."""
    from esc_eval.runs.cli import main

    config = tmp_path / "judge.toml"
    config.write_text('[judge]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "j"\n', encoding="utf-8")
    missing = tmp_path / "missing_en.json"
    for argv in (["judge", str(missing), "--config", str(config)], ["judge", "--config", str(config), str(missing)],
                 ["judge", "score", str(missing), "--config", str(config)]):
        assert main(argv) == 2
        assert str(missing) in capsys.readouterr().err
    assert main(["judge", "train", "--labels", str(tmp_path / "labels.jsonl"), "--base", "embedded", "--out", str(tmp_path / "o"),
                 "--layers", "1,x"]) == 2
    assert "--layers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as parsed:
        main(["judge", "train", "--config", str(config)])  # a scoring option: train's parser refuses it
    assert parsed.value.code == 2 and "--labels" in capsys.readouterr().err


async def test_judge_with_a_cache_sends_a_judgement_once(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """A second ``judge --cache`` of the same transcripts sends nothing and gives the same labels; its store says they were cached."""
    server = await fake_server(responder=label_for)
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "j"\n', encoding="utf-8")
    transcripts = tmp_path / "result_llama3_en.json"
    transcripts.write_text(json.dumps({"0": [SUPPORTER + "Hello!", SEEKER + "I lost my job.", SUPPORTER + "I'm sorry."],
                                       "1": [SUPPORTER + "Hello!", SEEKER + "I can't sleep."]}), encoding="utf-8")
    cache = tmp_path / "cache.sqlite"
    first = await esc_eval("judge", str(transcripts), "--config", str(config), "--cache", str(cache))
    assert first.returncode == 0, first.stderr
    sent = len(server.requests)
    assert sent == 2 * 7 and cache.exists()
    store = tmp_path / "judged.sqlite"
    again = await esc_eval("judge", str(transcripts), "--config", str(config), "--cache", str(cache), "--cache-mode", "read",
                           "--store", str(store))
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == sent                            # every judgement answered from the cache
    shown = await esc_eval("judge", str(transcripts), "--config", str(config), "--cache", str(cache))
    assert json.loads(shown.stdout) == json.loads(first.stdout) and len(server.requests) == sent
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT COUNT(*), SUM(cached) FROM scores").fetchone() == (14, 14)
    assert conn.execute("SELECT COUNT(*) FROM scores WHERE prompt_tokens > 0 AND completion_tokens > 0").fetchone() == (14,)  # as answered
    conn.close()

    missing = await esc_eval("judge", str(transcripts), "--config", str(config), "--cache", str(tmp_path / "none.sqlite"),
                             "--cache-mode", "read")
    assert missing.returncode == 2 and "none.sqlite: no such response cache file" in missing.stderr
    assert len(server.requests) == sent
    without = await esc_eval("judge", str(transcripts), "--config", str(config), "--cache-mode", "read")
    assert without.returncode == 2 and "--cache-mode read needs a cache file" in without.stderr
