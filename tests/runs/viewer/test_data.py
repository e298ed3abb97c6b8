"""The viewer's JSON (esc_eval.runs.viewer.data) against the store and ``report --format json``, and the HTML report file."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import pytest

from esc_eval.runs.analysis.leaderboard import read_store
from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from esc_eval.runs.viewer import data
from esc_eval.runs.viewer.html import bundle, embedded, page
from tests.runs.viewer.helpers import (
    DIMENSIONS,
    HOSTILE,
    PERSONAS,
    SUPPORTERS,
    episode_rows,
    key,
    make_store,
)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("viewer") / "run.sqlite", hostile_card=0)


def test_summary_has_the_report_json_numbers_and_one_row_per_episode(store_path: Path) -> None:
    with Store.open(store_path, readonly=True) as store:
        summary = data.summary([(store_path, store)])
    expected = json.loads(report_command(store_path, "json", None, [], None, None, None, compare=True))
    part = summary["stores"][0]
    assert part["leaderboard"]["overall"]["rows"] == expected["rows"]
    assert part["leaderboard"]["overall"]["comparisons"] == expected["comparisons"]
    by_language = json.loads(report_command(store_path, "json", None, ["supporter,language"], None, None, None))
    assert part["leaderboard"]["facets"]["language"]["rows"] == by_language["rows"]
    by_outcome = json.loads(report_command(store_path, "json", None, ["supporter,outcome"], None, None, None))
    assert part["leaderboard"]["facets"]["outcome"]["rows"] == by_outcome["rows"]
    assert {row["group"]["outcome"] for row in by_outcome["rows"]} >= {"terminated", "truncated"}, "the leaderboard splits by outcome"
    assert [d["key"] for d in summary["dimensions"]] == [d["key"] for d in expected["dimensions"]]
    assert len(part["episodes"]) == len(SUPPORTERS) * len(PERSONAS) * 20
    row = next(r for r in part["episodes"] if r["key"] == key("kind-bot", "default", 2))
    assert row["id"] == f"0:{row['key']}" and row["turns"] == 10 and row["distress"] == [6, 4, 2, 0, 0]
    assert set(row["scores"]) == set(DIMENSIONS) and row["outcome"] == "terminated"


def test_episode_holds_turns_with_state_raw_replies_and_events(store_path: Path) -> None:
    with Store.open(store_path, readonly=True) as store:
        detail = data.episode(0, store, key("kind-bot", "default", 3))
        assert data.episode(0, store, "no/such/key") is None
        assert data.search([(store_path, store)], "SEEKER WORDS 4 about") == [
            f"0:{key(s, p, c)}" for s in SUPPORTERS for p in PERSONAS for c in range(20) if 3 + c % 3 > 4]
    assert [t["role"] for t in detail["turns"]][:2] == ["supporter", "seeker"]
    assert detail["turns"][1]["state"] == {"emotion": "sad", "distress": 6, "revealed": [0], "facts": 3}
    final = [s for s in detail["scores"] if s["round"] == -1]
    assert {s["dimension"] for s in final} == set(DIMENSIONS) and all(s["raw"].startswith("Reasoning about") for s in final)
    assert [(e["kind"], e["detail"]) for e in detail["events"]] == [("retry", "HTTP 503, retrying in 0.5 s")]


def _inflate(text: str) -> object:
    return json.loads(gzip.decompress(base64.b64decode(text)))


def test_embedded_data_cannot_close_its_script_element() -> None:
    text = embedded({"t": "</script><script>alert(1)</script><!--"})
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", text) and _inflate(text) == {"t": "</script><script>alert(1)</script><!--"}


def test_html_report_embeds_every_transcript_and_no_network_address(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(store_path), "--format", "html", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)            # nothing fetched from anywhere
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    data_text = re.search(r'<script type="application/octet-stream" id="esc-data" data-encoding="gzip\+base64">(.*?)</script>', html, re.DOTALL)
    assert HOSTILE[0] not in html                                              # the markup is inside the encoded data
    value = _inflate(data_text.group(1))
    assert len(value["episodes"]) == 120 and value["episodes"][f"0:{key('terse-bot', 'guarded', 0)}"]["turns"][0]["text"] == HOSTILE[0]


def test_html_report_bad_input_is_one_line_and_writes_nothing(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(store_path), "--format", "html"]) == 2
    assert main(["report", str(tmp_path / "missing.sqlite"), "--format", "html", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["esc-eval: error: --format html needs --out FILE.html", f"esc-eval: error: {tmp_path / 'missing.sqlite'}: no such store"]
    assert list(tmp_path.iterdir()) == []


def test_html_report_of_1000_episodes_stays_under_10_mb(tmp_path: Path) -> None:
    path = make_store(tmp_path / "big.sqlite", cards=167, long=True)  # 2 × 3 × 167 = 1002 episodes of 10 rounds
    with Store.open(path, readonly=True) as store:
        size = len(page(bundle(path, store)).encode("utf-8"))
    print(f"HTML report of 1002 long episodes: {size / 1e6:.2f} MB")
    assert size <= 10_000_000, size


def test_leaderboards_are_rebuilt_only_when_finished_episodes_or_scores_change(tmp_path: Path) -> None:
    path = make_store(tmp_path / "live.sqlite", cards=2, personas=("default",))
    with Store.open(path, readonly=True) as reader:
        first = data.leaderboards(reader)
        writer = Store.open(path)
        writer.add_event("retry", "HTTP 503")                        # a write that leaves the numbers alone
        assert data.leaderboards(reader) is first
        writer.import_episodes([episode_rows("kind-bot", "default", 9)])
        writer.close_sync()
        rebuilt = data.leaderboards(reader)
    assert rebuilt is not first
    assert rebuilt["overall"]["rows"][0]["episodes"]["done"] == first["overall"]["rows"][0]["episodes"]["done"] + 1


def test_a_large_store_shows_its_leaderboard_first_and_its_comparisons_when_ready(store_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The live viewer (``wait=False``) does not hold the first leaderboard back for the comparisons; ``version`` says when they arrive."""
    monkeypatch.setattr(data, "LARGE_STORE", 0)
    monkeypatch.setattr(data, "_CACHE", {})
    monkeypatch.setattr(data, "_PENDING", {})
    with Store.open(store_path, readonly=True) as store:
        stores = [(store_path, store)]
        before = data.version(stores)
        first = data.summary(stores, wait=False)["stores"][0]["leaderboard"]["overall"]
        assert first["comparisons_pending"] is True and "comparisons" not in first
        assert first["cost_pending"] is True and "cost" not in first          # priced with the comparisons
        assert first["rows"] == data.build_leaderboards(store, costed=False)["overall"]["rows"]   # the same numbers, comparisons aside
        building = data._PENDING[str(store_path)][2]
        assert data.version(stores)[0][-1] == int(building.done())      # 0 while the comparisons are being built
        building.result(timeout=120)
        after = data.version(stores)
        assert before[0][-1] == 1 and after[0][-1] == 1 and after[0][:-1] == before[0][:-1]
        full = data.summary(stores, wait=False)["stores"][0]["leaderboard"]["overall"]
    expected = json.loads(report_command(store_path, "json", None, [], None, None, None, compare=True))
    assert full["comparisons"] == expected["comparisons"] and "comparisons_pending" not in full
    assert full["cost"] == expected["cost"] and "cost_pending" not in full


def test_episode_rows_are_built_once_per_store_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second summary of an unchanged store reuses its rows (and reads no scores); any write builds them again."""
    path = make_store(tmp_path / "rows.sqlite", cards=2, personas=("default",))
    for cache in ("_ROWS", "_CACHE", "_PENDING"):
        monkeypatch.setattr(data, cache, {})
    with Store.open(path, readonly=True) as reader:
        first = data.summary([(path, reader)])["stores"][0]["episodes"]
        reads = []
        monkeypatch.setattr(data, "read_store", lambda *a, **k: reads.append(1) or read_store(*a, **k))
        assert data.summary([(path, reader)])["stores"][0]["episodes"] is first and not reads
        assert data.summary([(path, reader)])["stores"][0]["episodes"] is first
        writer = Store.open(path)
        writer.import_episodes([episode_rows("kind-bot", "default", 9)])
        writer.close_sync()
        again = data.summary([(path, reader)])["stores"][0]
    assert reads == [1] and again["episodes"] is not first and len(again["episodes"]) == len(first) + 1
    new = next(r for r in again["episodes"] if r["key"] == key("kind-bot", "default", 9))
    assert new["scores"] and new["turns"] > 0
    assert again["leaderboard"]["overall"]["rows"][0]["episodes"]["done"] == sum(r["supporter"] == "kind-bot" for r in again["episodes"])


def test_a_facet_with_one_value_has_the_numbers_of_its_own_report(tmp_path: Path) -> None:
    """Persona and source have one value in this store: their leaderboards are the overall rows, without a report built again."""
    path = make_store(tmp_path / "one.sqlite", cards=3, personas=("default",))
    with Store.open(path, readonly=True) as store:
        assert {e.persona for e in store.episodes()} == {"default"} and len({e.source for e in store.episodes()}) == 1
        boards = data.build_leaderboards(store)
    assert "comparisons" in boards["overall"]
    for facet in ("persona", "source", "language"):                 # language has two values: built as before
        expected = json.loads(report_command(path, "json", None, [f"supporter,{facet}"], None, None, None))
        got = boards["facets"][facet]
        assert (got["by"], got["rows"], got["dimensions"]) == (expected["by"], expected["rows"], expected["dimensions"])
        assert "comparisons" not in got and "ranks" not in got


def test_an_imported_dialogues_turns_say_their_tokens_are_unknown(tmp_path: Path) -> None:
    """ESC-Eval's result files hold no token counts: the episode view says so (the page: "tokens unknown"), never 0 tokens."""
    result = tmp_path / "llama3_en.json"
    result.write_text(json.dumps({"0": ["AI assistant：Hello, you can confide in me.", "ESC-Role：I feel low.", "AI assistant：I hear you."]},
                                 ensure_ascii=False), encoding="utf-8")
    path = tmp_path / "imported.sqlite"
    assert main(["import", str(path), str(result)]) == 0
    with Store.open(path, readonly=True) as store:
        (episode,) = store.episodes()
        turns = data.episode(0, store, episode.key)["turns"]
    assert [(t["role"], t["usage"]) for t in turns] == [("supporter", "reported"), ("seeker", "unknown"), ("supporter", "unknown")]
    assert not any(t["cached"] for t in turns)
