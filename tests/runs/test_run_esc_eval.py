"""`esc-eval run` against two supporter servers on loopback reproduces ESC-Eval's requests and files."""

from __future__ import annotations

import json
from pathlib import Path

from esc_eval.roles.loaders import load_cards
from esc_eval.roles.templates import load_protocol
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval, write_config


async def test_two_supporters_three_cards_match_esc_eval(tmp_path: Path, shared: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    seeker = await fake_server()
    sup_a, sup_b = await fake_server(), await fake_server()
    protocol_file = shared / "esc_role_protocol.json"
    config = write_config(
        tmp_path / "run.toml", seeker_url=seeker.base_url,
        supporters={"alpha": sup_a.base_url, "beta": sup_b.base_url},
        cards=shared / "test_en.json", protocol=str(protocol_file),
    )
    store = tmp_path / "run.sqlite"
    result = await esc_eval("run", str(config), "--store", str(store), "--no-monitor")
    assert result.returncode == 0, result.stderr
    assert "6 episodes finished, 0 failed" in result.stdout

    cards = load_cards(shared / "test_en.json")
    protocol = load_protocol(protocol_file)
    opener = protocol.opener("en")
    # every request the seeker server saw: system prompt with the card, then the opener as 'user'
    assert len(seeker.requests) == 6 * 5
    by_card = {c.profile: c for c in cards}
    for body in seeker.requests:
        messages = body["messages"]
        assert body["model"] == "esc-role" and body["max_tokens"] == 512
        # ESC-Eval's request, plus the seed every sampled request carries (temperature unset: the server's default samples)
        assert set(body) == {"model", "messages", "max_tokens", "seed"} and isinstance(body["seed"], int)
        assert messages[0]["role"] == "system"
        matching = [c for c in by_card.values() if messages[0]["content"] == protocol.seeker_prompt(c)]
        assert len(matching) == 1
        assert messages[1] == {"role": "user", "content": opener}
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * ((len(messages) - 2) // 2) + ["user"]
    # supporters: default system prompt, never the opener, the seeker's lines as 'user'
    for server, model in ((sup_a, "alpha-model"), (sup_b, "beta-model")):
        assert len(server.requests) == 3 * 5
        for body in server.requests:
            messages = body["messages"]
            assert body["model"] == model
            assert messages[0] == {"role": "system", "content": "You are a helpful assistant!"}
            assert all(m["content"] != opener for m in messages)
            assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * ((len(messages) - 2) // 2) + ["user"]
            assert all(m["content"].startswith("esc-role reply") for m in messages[1::2][1:]) or len(messages) == 2

    # the store: 6 complete episodes of 11 lines
    db = Store.open(store, readonly=True)
    episodes = db.episodes()
    assert len(episodes) == 6 and {e.status for e in episodes} == {"done"}
    assert {e.outcome for e in episodes} == {"truncated"}
    for e in episodes:
        assert len(db.transcript(e.key)) == 11
    assert db.meta("seed") == 0 and "autogen-core" in db.meta("versions")
    db.close_sync()

    out = tmp_path / "export"
    exported = await esc_eval("export", str(store), "--format", "esc-eval", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in out.iterdir()) == ["result_alpha_en.json", "result_beta_en.json"]
    result_a = json.loads((out / "result_alpha_en.json").read_text(encoding="utf-8"))
    assert list(result_a) == ["0", "1", "2"]
    for lines in result_a.values():
        assert len(lines) == 11
        assert lines[0] == "AI assistant：" + opener
        assert all(line.startswith("ESC-Role：") for line in lines[1::2])
        assert all(line.startswith("AI assistant：") for line in lines[2::2])
        assert lines[2] == "AI assistant：alpha-model reply 2"


async def test_jsonl_export_holds_every_episode(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    config = write_config(tmp_path / "run.toml", seeker_url=server.base_url, supporters={"s": server.base_url}, rounds=2,
                          extra='\n[cards]\nlanguage = "zh"\nlimit = 3\n')
    store = tmp_path / "run.sqlite"
    assert (await esc_eval("run", str(config), "--store", str(store), "--no-monitor")).returncode == 0
    out = tmp_path / "jsonl"
    assert (await esc_eval("export", str(store), "--format", "jsonl", "--out", str(out))).returncode == 0
    store_line, *records = [json.loads(line) for line in (out / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert store_line["store"]["meta"]["fingerprint"] and len(records) == 3
    assert all(r["language"] == "zh" and r["status"] == "done" and len(r["turns"]) == 5 for r in records)
    assert records[0]["turns"][0]["role"] == "supporter"
