"""``esc-eval cards build`` against the fake server: three source shapes, every way an item can drop out, resume, and a run over the result."""

from __future__ import annotations

import json
from pathlib import Path

from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval, write_config
from tests.runs.cards.helpers import responder, write_build_config, write_sources

EXPECTED_COUNTS = {"items": 8, "bad_records": 3, "extracted": 7, "extraction_rejected": 1, "extraction_failed": 0,
                   "below_quality": 1,
                   "pii_rejected": 1, "pii_scrubbed": 0, "near_duplicates": 1, "written": 4}


async def test_build_from_three_shapes_reports_every_drop_and_runs(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder)
    sources = write_sources(tmp_path)
    config = write_build_config(tmp_path / "build.toml", server.base_url)
    out = tmp_path / "cards.json"
    result = await esc_eval("cards", "build", *map(str, sources), "--config", str(config), "--out", str(out),
                            "--store", str(tmp_path / "build.sqlite"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"] == EXPECTED_COUNTS
    counts = report["counts"]
    assert counts["items"] == counts["extracted"] + counts["extraction_rejected"] + counts["extraction_failed"]
    assert counts["extracted"] == counts["below_quality"] + counts["pii_rejected"] + counts["near_duplicates"] + counts["written"]
    reasons = {(r["stage"], r["item"]): r["reason"] for r in report["rejected"]}
    assert reasons[("bad_records", f"{sources[0]}: record 3")] == "empty dialogue"
    assert reasons[("bad_records", f"{sources[1]}: line 2")].startswith("not valid JSON")
    assert "empty post" in reasons[("bad_records", f"{sources[2]}: line 2")]
    assert reasons[("extraction_rejected", f"{sources[1]}: line 3")] == (
        "reply not usable after one retry: not JSON (Expecting value, at character 0); the reply began "
        + repr("Sure, I can help with that person's story!"))
    assert reasons[("pii_rejected", f"{sources[0]}: record 4")] == "personal identifiers: phone"
    assert reasons[("near_duplicates", f"{sources[0]}: record 2")] == "near-duplicate of ESConv:1"
    assert reasons[("below_quality", f"{sources[1]}: line 5")] == "quality low is below high"

    cards = json.loads(out.read_text(encoding="utf-8"))
    assert [c["source"] for c in cards] == ["ESConv", "ExTES", "ExTES", "PsyQA"]
    assert [c["res"] for c in cards] == ["工作学习", "家庭生活", "工作学习", "社会与其他"]
    assert all(set(c) == {"base", "res", "source", "base_biaozhu", "language", "id"} for c in cards)
    assert cards[0]["base"].startswith("Age: 22\nGender: Female\nOccupation: Student\nProblem: She failed")
    assert cards[0]["base_biaozhu"].startswith("年龄：") and cards[0]["language"] == "english"
    assert [c["id"] for c in cards] == [0, 1, 2, 3]
    # the retry carried the parse error back to the model
    retried = [r for r in server.requests if len(r["messages"]) == 4 and "MARK-retry" in r["messages"][1]["content"]]
    assert retried and "not JSON" in retried[0]["messages"][3]["content"]
    # one call per item, a second for the two bad replies, one translation per card past the quality bar
    extractions = [r for r in server.requests if r["model"] == "extractor"]
    assert len(extractions) == 8 + 2 and len(server.requests) - len(extractions) == 6
    assert report["tokens"]["calls"] == len(server.requests)
    assert report["tokens"]["prompt"] > 0 and report["tokens"]["completion"] > 0

    validated = await esc_eval("cards", "validate", str(out))
    assert validated.returncode == 0 and "4 valid cards" in validated.stdout, validated.stderr
    run_config = write_config(tmp_path / "run.toml", seeker_url=server.base_url, supporters={"s1": server.base_url},
                              cards=out, rounds=2)
    run = await esc_eval("run", str(run_config), "--store", str(tmp_path / "run.sqlite"), "--no-monitor")
    assert run.returncode == 0, run.stderr
    with Store.open(tmp_path / "run.sqlite", readonly=True) as store:
        episodes = store.episodes()
    assert sorted(e.source for e in episodes) == ["ESConv", "ExTES", "ExTES", "PsyQA"]
    assert all(e.status == "done" for e in episodes)


async def test_resume_extracts_only_what_is_missing(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder)
    sources = write_sources(tmp_path)
    config = write_build_config(tmp_path / "build.toml", server.base_url, translator=False)
    store = tmp_path / "build.sqlite"
    first = await esc_eval("cards", "build", str(sources[0]), "--config", str(config), "--out", str(tmp_path / "a.jsonl"),
                           "--store", str(store))
    assert first.returncode == 0, first.stderr
    calls = len(server.requests)
    assert calls == 3
    refused = await esc_eval("cards", "build", *map(str, sources), "--config", str(config), "--out", str(tmp_path / "b.jsonl"),
                             "--store", str(store))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    again = await esc_eval("cards", "build", *map(str, sources), "--config", str(config), "--out", str(tmp_path / "b.jsonl"),
                           "--store", str(store), "--resume")
    assert again.returncode == 0, again.stderr
    assert len(server.requests) - calls == 5 + 2  # the five new items, and the two bad replies' retries
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"]["written"] == 4 and report["counts"]["items"] == 8
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["annotations"]["quality"] for r in records] == ["high"] * 4 and "translation" not in records[0]["annotations"]
    validated = await esc_eval("cards", "validate", str(tmp_path / "b.jsonl"), "--language", "en")
    assert validated.returncode == 0, validated.stderr


async def test_scrub_keeps_the_card_without_the_identifier_and_says_so(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder)
    sources = write_sources(tmp_path)
    config = write_build_config(tmp_path / "build.toml", server.base_url, translator=False)
    config.write_text(config.read_text().replace('concurrency = 4', 'concurrency = 4\npii = "scrub"'), encoding="utf-8")
    out = tmp_path / "cards.yaml"
    result = await esc_eval("cards", "build", str(sources[0]), "--config", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"]["pii_scrubbed"] == 1 and report["counts"]["pii_rejected"] == 0
    assert {"id": 1, "item": "ESConv:4", "scrubbed": ["phone"]} in report["cards"]
    text = out.read_text(encoding="utf-8")
    assert "555-867-5309" not in text and "[removed]" in text
    validated = await esc_eval("cards", "validate", str(out))
    assert validated.returncode == 0 and "2 valid cards" in validated.stdout, validated.stderr


async def test_bad_input_is_exit_2_and_writes_nothing(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder)
    sources = write_sources(tmp_path)
    config = write_build_config(tmp_path / "build.toml", server.base_url)
    config.write_text(config.read_text().replace('language = "en"', 'language = "fr"'), encoding="utf-8")
    bad_language = await esc_eval("cards", "build", str(sources[0]), "--config", str(config), "--out", str(tmp_path / "c.json"))
    assert bad_language.returncode == 2
    assert bad_language.stderr.strip() == f"esc-eval: error: {config}: [build] field 'language': must be one of en, zh, got 'fr'"
    write_build_config(config, server.base_url)
    not_json = tmp_path / "broken.json"
    not_json.write_text("[{", encoding="utf-8")
    broken = await esc_eval("cards", "build", str(not_json), "--config", str(config), "--out", str(tmp_path / "c.json"))
    assert broken.returncode == 2 and str(not_json) in broken.stderr and "not valid JSON" in broken.stderr
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "build-report.json").exists()
    assert server.requests == []


async def test_an_item_the_backend_gives_up_on_is_failed_then_retried_by_resume(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    down = True
    server = await fake_server(responder=responder,
                               fault_for=lambda body: "500" if down and "MARK-family" in body["messages"][1]["content"] else None)
    sources = write_sources(tmp_path)
    config = write_build_config(tmp_path / "build.toml", server.base_url, translator=False)
    config.write_text(config.read_text() + "max_attempts = 2\n", encoding="utf-8")
    store, out = tmp_path / "build.sqlite", tmp_path / "cards.json"
    first = await esc_eval("cards", "build", str(sources[1]), "--config", str(config), "--out", str(out), "--store", str(store))
    assert first.returncode == 1 and "--resume" in first.stderr, first.stderr
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"]["extraction_failed"] == 1 and report["counts"]["written"] == 1
    failed = [r for r in report["rejected"] if r["stage"] == "extraction_failed"]
    assert failed[0]["item"] == f"{sources[1]}: line 1" and "gave up after 2 attempts: 5xx" in failed[0]["reason"]
    down = False
    calls = len(server.requests)
    again = await esc_eval("cards", "build", str(sources[1]), "--config", str(config), "--out", str(out), "--store", str(store), "--resume")
    assert again.returncode == 0, again.stderr
    assert len(server.requests) - calls == 1  # only the failed item is asked again
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"]["extraction_failed"] == 0 and report["counts"]["written"] == 2
    assert [c["res"] for c in json.loads(out.read_text(encoding="utf-8"))] == ["家庭生活", "工作学习"]


async def test_chinese_cards_from_posts_use_chinese_labels_and_names(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    card = {"age": "青年", "gender": "未提及", "occupation": "学生", "problem": "高考临近，她每晚失眠，担心让父母失望。",
            "category": "work_study", "quality": "middle"}
    server = await fake_server(responder=lambda body: json.dumps(card, ensure_ascii=False))
    posts = tmp_path / "PsyQA.jsonl"
    posts.write_text("".join(json.dumps({"id": i, "title": "高考焦虑", "text": f"每晚睡不着{i}"}, ensure_ascii=False) + "\n"
                             for i in (1, 2)), encoding="utf-8")
    config = write_build_config(tmp_path / "build.toml", server.base_url, translator=False)
    config.write_text(config.read_text().replace('language = "en"', 'language = "zh"'), encoding="utf-8")
    out = tmp_path / "cards.json"
    strict = await esc_eval("cards", "build", str(posts), "--config", str(config), "--out", str(out))
    assert strict.returncode == 1 and not out.exists()  # 'middle' is below the default 'high'
    result = await esc_eval("cards", "build", str(posts), "--config", str(config), "--out", str(out), "--min-quality", "middle")
    assert result.returncode == 0, result.stderr
    system = server.requests[0]["messages"][0]["content"]
    assert "Chinese" in system and '"未提及"' in system
    cards = json.loads(out.read_text(encoding="utf-8"))
    assert cards == [{"base": "年龄：青年\n性别：未提及\n职业：学生\n问题：高考临近，她每晚失眠，担心让父母失望。",
                      "res": "工作学习", "source": "PsyQA", "language": "chinese", "id": 0}]
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"]["near_duplicates"] == 1
    validated = await esc_eval("cards", "validate", str(out), "--language", "zh")
    assert validated.returncode == 0, validated.stderr


async def test_extraction_runs_concurrently_up_to_the_limit(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=responder, delay=0.3)
    posts = tmp_path / "PsyQA.jsonl"
    posts.write_text("".join(json.dumps({"id": i, "title": "Alone", "text": f"No friends (MARK-lonely) {i}"}) + "\n"
                             for i in range(8)), encoding="utf-8")
    config = write_build_config(tmp_path / "build.toml", server.base_url, translator=False)
    config.write_text(config.read_text().replace("concurrency = 4", "concurrency = 3"), encoding="utf-8")
    result = await esc_eval("cards", "build", str(posts), "--config", str(config), "--out", str(tmp_path / "c.jsonl"))
    assert result.returncode == 0, result.stderr
    assert server.peak_in_flight == 3 and len(server.requests) == 8
    assert "8/8 items extracted" in result.stderr
