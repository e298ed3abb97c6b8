"""Importing ESC-Eval result and score files: round trip through the store, reports on imports, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.runs.analysis.report import agreement_report, build_report
from esc_eval.runs.formats.exchange import export_esc_eval
from esc_eval.runs.formats.importing import ResultFileError, import_command, import_esc_eval, pair_files
from esc_eval.runs.store import Store, StoreError

OPENER_EN = "AI assistant：Hello, I'm your personal assistant. You can confide in me about any worries or concerns you may have!"
OPENER_ZH = "AI assistant：你好，我是您的私人助手，您有任何烦恼都可以向我诉说！"


def _dialogue(opener: str, seeker: list[str], supporter: list[str]) -> list[str]:
    lines = [opener]
    for s, a in zip(seeker, supporter):
        lines += [f"ESC-Role：{s}", f"AI assistant：{a}"]
    return lines


RESULT_EN = {
    "0": _dialogue(OPENER_EN, ["I can't sleep.", "Work, mostly.", "Thanks."], ["What keeps you up?", "Tell me more.", "Take care!"]),
    "1": _dialogue(OPENER_EN, ["My son won't talk to me.", "He is 15."], ["That sounds hard.", "Teenagers: AI assistant：is a quote"]),
    "2": _dialogue(OPENER_EN, ["Hi"], [""]),
    "10": _dialogue(OPENER_EN, ["Line with\nnewline and \"quotes\" and ：colon"], ["ok"]),
}
# Dimension order as ESC-Eval writes it (human before tech), with a -1.
SCORE_EN = {
    "0": {"fluency": 4, "diversity": 3, "empathic": 2, "suggestion": 2, "human": 3, "tech": 1, "overall": 3},
    "1": {"fluency": 3, "diversity": 2, "empathic": -1, "suggestion": 1, "human": 2, "tech": 2, "overall": 2},
    "2": {"fluency": 2, "diversity": 1, "empathic": 0, "suggestion": 0, "human": 1, "tech": 0, "overall": 1},
    "10": {"fluency": 3, "diversity": 3, "empathic": 3, "suggestion": 3, "human": 3, "tech": 3, "overall": -1},
}
RESULT_ZH = {
    "0": _dialogue(OPENER_ZH, ["我最近压力很大。", "工作上的事情。"], ["能说说发生了什么吗？", "我理解你的感受。"]),
    "1": _dialogue(OPENER_ZH, ["相亲让我很烦。"], ["你愿意多讲讲吗？"]),
}
SCORE_ZH = {
    "0": {"fluency": 4, "diversity": 4, "empathic": 4, "suggestion": 3, "human": 4, "tech": 3, "overall": 4},
    "1": {"fluency": 2, "diversity": 2, "empathic": 2, "suggestion": 2, "human": 2, "tech": 2, "overall": 2},
}


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=4), encoding="utf-8")  # as our export writes
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "in"
    ordered_en = dict(sorted(RESULT_EN.items(), key=lambda kv: int(kv[0])))
    return {
        "result_en": _write(src / "result_llama3_en.json", ordered_en),
        "score_en": _write(src / "score_llama3_en.json", SCORE_EN),
        "result_zh": _write(src / "Qwen1.5_chat_zh.json", RESULT_ZH),  # ESC-Eval's MODEL_LANG.json naming
        "score_zh": _write(src / "score_Qwen1.5_chat_zh.json", SCORE_ZH),
    }


def _load(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def test_round_trip_import_then_export(tmp_path: Path, files: dict[str, Path]) -> None:
    store = Store.open(tmp_path / "s.sqlite", create=True)
    try:
        en = import_esc_eval(store, files["result_en"], files["score_en"])
        zh = import_esc_eval(store, files["result_zh"], files["score_zh"])
        assert (en.supporter, en.language, en.episodes, en.scores) == ("llama3", "en", 4, 28)
        assert (zh.supporter, zh.language, zh.episodes, zh.scores) == ("Qwen1.5_chat", "zh", 2, 14)
        written = export_esc_eval(store, tmp_path / "out")
    finally:
        store.close_sync()
    out = tmp_path / "out"
    assert sorted(p.name for p in written) == [
        "result_Qwen1.5_chat_zh.json", "result_llama3_en.json", "score_Qwen1.5_chat_zh.json", "score_llama3_en.json"]
    assert _load(out / "result_llama3_en.json") == RESULT_EN
    assert _load(out / "score_llama3_en.json") == SCORE_EN
    assert _load(out / "result_Qwen1.5_chat_zh.json") == RESULT_ZH
    assert _load(out / "score_Qwen1.5_chat_zh.json") == SCORE_ZH
    # same bytes too, for a result file written the way ESC-Eval files are (index order, indent 4, UTF-8)
    assert (out / "result_llama3_en.json").read_bytes() == files["result_en"].read_bytes()
    assert (out / "result_Qwen1.5_chat_zh.json").read_bytes() == files["result_zh"].read_bytes()


def test_imported_episodes_and_turns(tmp_path: Path, files: dict[str, Path]) -> None:
    store = Store.open(tmp_path / "s.sqlite", create=True)
    try:
        import_esc_eval(store, files["result_en"], files["score_en"])
        episodes = store.episodes()
        assert [e.card_index for e in episodes] == [0, 1, 2, 10]
        first = episodes[0]
        assert first.key == "llama3/default/en-00000/imported/r0"
        assert (first.status, first.card_id, first.category, first.source, first.persona, first.repeat) == (
            "done", "0", "unknown", "unknown", "default", 0)
        assert store.transcript(first.key)[:2] == [
            ("supporter", OPENER_EN.removeprefix("AI assistant：")), ("seeker", "I can't sleep.")]
        # a supporter line quoting the other prefix keeps it as text
        assert store.transcript(episodes[1].key)[-1] == ("supporter", "Teenagers: AI assistant：is a quote")
        # importing again replaces, never duplicates
        import_esc_eval(store, files["result_en"], files["score_en"])
        assert len(store.episodes()) == 4
        assert len(store.scores()) == 28
        assert [e.ordinal for e in store.episodes()] == [0, 1, 2, 3]
    finally:
        store.close_sync()


def test_report_and_agreement_on_imported_scores(tmp_path: Path, files: dict[str, Path]) -> None:
    store = Store.open(tmp_path / "s.sqlite", create=True)
    try:
        import_esc_eval(store, files["result_en"], files["score_en"])
        import_esc_eval(store, files["result_zh"])  # transcripts only
        report = build_report(store, by=("supporter", "language"))
        llama, qwen = report.rows
        assert dict(llama.group) == {"supporter": "llama3", "language": "en"}
        # fluency 4, 3, 2, 3 -> 12 / 16 -> 75
        assert llama.dimensions["fluency"].value == pytest.approx(75.0)
        # empathic 2, -1, 0, 3 -> 5 / 12 * 100
        assert llama.dimensions["empathic"].value == pytest.approx(500 / 12)
        assert (llama.dimensions["empathic"].n, llama.dimensions["empathic"].n_unparsed) == (3, 1)
        assert llama.dimensions["overall"].n_unparsed == 1
        assert (qwen.episodes_done, qwen.dimensions["fluency"].n, qwen.dimensions["fluency"].n_missing) == (2, 0, 2)

        human = _write(tmp_path / "human.json", {
            "0": {"fluency": 4, "empathic": 3, "overall": 1},
            "1": {"fluency": 1, "empathic": 2, "overall": 2},
            "2": {"fluency": 2, "empathic": 0, "overall": 2},
        })
        result = agreement_report(store, human, supporter="llama3")
        # fluency: (4,4) (3,1) (2,2) -> exact 2/3, soft 2/3; empathic: (-1 skipped) (2,3) (0,0) -> 1/2, 2/2;
        # overall: (3,1) (2,2) (1,2) -> 1/3, 2/3
        assert result["dimensions"]["fluency"] == {"name": "Fluency", "acc": pytest.approx(2 / 3), "acc_soft": pytest.approx(2 / 3), "n": 3}
        assert result["dimensions"]["empathic"] == {"name": "Empathy", "acc": 0.5, "acc_soft": 1.0, "n": 2}
        assert result["dimensions"]["overall"] == {"name": "Overall", "acc": pytest.approx(1 / 3), "acc_soft": pytest.approx(2 / 3), "n": 3}
        assert result["cards"] == {"matched": 3, "only_human": 0, "only_judge": 1}
    finally:
        store.close_sync()


def test_supporter_and_language_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path / "dialogues.json", {"0": [OPENER_EN, "ESC-Role：hi"]})
    store = Store.open(tmp_path / "s.sqlite", create=True)
    try:
        with pytest.raises(ResultFileError, match=r"dialogues\.json: cannot tell supporter and language"):
            import_esc_eval(store, path)
        summary = import_esc_eval(store, path, supporter="gpt-4", language="english")
        assert (summary.supporter, summary.language) == ("gpt-4", "en")
        assert store.episodes()[0].supporter == "gpt-4"
    finally:
        store.close_sync()


@pytest.mark.parametrize(("result", "score", "message"), [
    ("[1, 2]", None, r"result_m_en\.json: must be a JSON object"),
    ("{not json", None, r"result_m_en\.json: not valid JSON"),
    ({"first": [OPENER_EN]}, None, r"result_m_en\.json: key 'first': is not a card index"),
    ({"01": [OPENER_EN]}, None, r"key '01': is not a card index"),
    ({"0": "AI assistant：hi"}, None, r"result_m_en\.json: key '0': must be a list of lines"),
    ({"0": []}, None, r"key '0': transcript is empty"),
    ({"0": [OPENER_EN, "Seeker: hi"]}, None, r"result_m_en\.json: key '0': line does not start with"),
    ({"0": [OPENER_EN, "ESC-Role:hi"]}, None, r"key '0': line does not start with"),  # ASCII colon
    ({"0": [OPENER_EN]}, {"0": {"fluency": 5}}, r"score_m_en\.json: key '0': dimension 'fluency': expected a label 0..4 or -1, got 5"),
    ({"0": [OPENER_EN]}, {"0": {"fluency": "3"}}, r"score_m_en\.json: key '0': dimension 'fluency'"),
    ({"0": [OPENER_EN]}, {"0": {"fluency": True}}, r"key '0': dimension 'fluency'"),
    ({"0": [OPENER_EN]}, {"0": {"empathy": 3}}, r"score_m_en\.json: key '0': unknown dimension 'empathy'"),
    ({"0": [OPENER_EN]}, {"0": [3]}, r"score_m_en\.json: key '0': must be an object"),
    ({"0": [OPENER_EN]}, {"1": {"fluency": 3}}, r"score_m_en\.json: key '1': has no transcript"),
])
def test_bad_files_name_file_and_key_and_write_nothing(tmp_path: Path, result: object, score: object, message: str) -> None:
    result_path = tmp_path / "result_m_en.json"
    result_path.write_text(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False), encoding="utf-8")
    score_path = None
    if score is not None:
        score_path = tmp_path / "score_m_en.json"
        score_path.write_text(json.dumps(score), encoding="utf-8")
    store = Store.open(tmp_path / "s.sqlite", create=True)
    try:
        with pytest.raises(ResultFileError, match=message) as caught:
            import_esc_eval(store, result_path, score_path)
        assert isinstance(caught.value, ValueError)
        assert store.episodes() == [] and store.turns() == []
    finally:
        store.close_sync()


def test_missing_file_and_readonly_store(tmp_path: Path, files: dict[str, Path]) -> None:
    store = Store.open(tmp_path / "s.sqlite", create=True)
    try:
        with pytest.raises(ResultFileError, match=r"result_x_en\.json: no such file"):
            import_esc_eval(store, tmp_path / "result_x_en.json")
    finally:
        store.close_sync()
    readonly = Store.open(tmp_path / "s.sqlite", readonly=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            import_esc_eval(readonly, files["result_en"])
    finally:
        readonly.close_sync()


async def test_refuses_while_writer_runs(tmp_path: Path, files: dict[str, Path]) -> None:
    store = Store.open(tmp_path / "s.sqlite", create=True)
    await store.start_writer()
    try:
        with pytest.raises(StoreError, match="writer is running"):
            import_esc_eval(store, files["result_en"])
    finally:
        await store.close()


def test_pair_files(tmp_path: Path) -> None:
    r1, r2 = tmp_path / "result_a_en.json", tmp_path / "b_zh.json"
    s2 = tmp_path / "score_b_zh.json"
    assert pair_files([r1, r2], [s2]) == [(r1, None), (r2, s2)]
    # one of each: paired as given, unless the names tell another supporter or language (then only with force)
    with pytest.raises(ResultFileError, match=r"score_b_zh\.json: is named for b \(zh\), not a \(en\) like .*result_a_en\.json; pass --force"):
        pair_files([r1], [s2])
    assert pair_files([r1], [s2], force=True) == [(r1, s2)]
    assert pair_files([r1], [tmp_path / "labels.json"]) == [(r1, tmp_path / "labels.json")]  # a name that tells nothing
    with pytest.raises(ResultFileError, match=r"score_c_en\.json: matches no result file"):
        pair_files([r1, r2], [tmp_path / "score_c_en.json"])
    with pytest.raises(ResultFileError, match="names the same supporter and language"):
        pair_files([r1, tmp_path / "a_en.json"], [])


def test_import_command_creates_store(tmp_path: Path, files: dict[str, Path]) -> None:
    store_path = tmp_path / "runs" / "imported.sqlite"
    text = import_command(store_path, [files["result_en"], files["result_zh"]], [files["score_zh"], files["score_en"]])
    assert "result_llama3_en.json: 4 episodes, 28 scores (supporter llama3, language en)" in text
    assert "Qwen1.5_chat_zh.json: 2 episodes, 14 scores (supporter Qwen1.5_chat, language zh)" in text
    assert text.splitlines()[-1] == f"store: {store_path} (created)"
    text = import_command(store_path, [files["result_en"]], [])
    assert text.splitlines()[-1] == f"store: {store_path}"
    store = Store.open(store_path, readonly=True)
    try:
        assert store.counts() == {"done": 6}
        assert len(store.meta("imports")) == 3
        assert store.meta("origin") == "esc-eval import"
    finally:
        store.close_sync()


def test_import_command_bad_input_writes_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    bad = _write(tmp_path / "in" / "result_bad_en.json", {"0": ["nobody: hi"]})
    store_path = tmp_path / "new.sqlite"
    with pytest.raises(ResultFileError, match=r"result_bad_en\.json: key '0'"):
        import_command(store_path, [files["result_en"], bad], [])
    assert not store_path.exists()
    with pytest.raises(ResultFileError, match="no result files"):
        import_command(store_path, [], [])
