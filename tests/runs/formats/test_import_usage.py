"""Imported ESC-Eval transcripts carry no token counts: their turns' usage is unknown, never 0 tokens.

The report counts them as requests with unknown tokens (docs/cost.md), a dry run refuses to calibrate from them,
and a JSONL export carries the marking to the store it is imported into. /work/shared/esc-eval holds ESC-Eval's
cards, protocol and prompts but no result file, so the result files are written here as ESC-Eval writes them,
with ESC-Role's seeker on cards of ESC-Eval's own ``test_en.json`` (the ``shared`` fixture skips without them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.roles.loaders import load_cards
from esc_eval.runs.analysis.cost import cost_lines, cost_of
from esc_eval.runs.execution.estimate import Calibration
from esc_eval.runs.pricing import Price, Prices
from esc_eval.runs.store import Store
from esc_eval.runs.store.records import UNKNOWN_USAGE
from esc_eval.runs.store.usage import usage
from esc_eval.testing.cli import write_config

from .helpers import cli, export, make_run

OPENER = "AI assistant：Hello, I'm your personal assistant. You can confide in me about any worries or concerns you may have!"


def _result(shared: Path) -> dict[str, list[str]]:
    """Three dialogues in ESC-Eval's result format, one per card of its ``test_en.json``: the opener, then 3, 2 and 1 rounds."""
    cards = load_cards(shared / "test_en.json")
    out = {}
    for index, card in enumerate(cards[:3]):
        lines = [OPENER]
        for r in range(3 - index):
            lines += [f"ESC-Role：About card {card.id}, round {r}: I feel low.", f"AI assistant：I hear you ({r})."]
        out[str(index)] = lines
    return out


SEEKER_LINES, SUPPORTER_LINES = 3 + 2 + 1, 3 + 2 + 1
"""The requests the three dialogues stand for: the openers (3) are no request."""


@pytest.fixture
def result_file(tmp_path: Path, shared: Path) -> Path:
    path = tmp_path / "in" / "llama3_en.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_result(shared), ensure_ascii=False, indent=4), encoding="utf-8")
    return path


def _imported(tmp_path: Path, result_file: Path, capsys: pytest.CaptureFixture[str], name: str = "imported.sqlite") -> Path:
    store = tmp_path / name
    code, _, err = cli(capsys, "import", store, result_file)
    assert code == 0, err
    return store


def test_imported_turns_are_unknown_in_the_report_not_0_tokens(tmp_path: Path, result_file: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    store_path = _imported(tmp_path, result_file, capsys)
    with Store.open(store_path, readonly=True) as store:
        turns = store.turns()
        rows = usage(store)
    assert {(t.role, t.usage) for t in turns if t.idx == 0} == {("supporter", "reported")}, "the opener is no request"
    assert sum(t.usage == UNKNOWN_USAGE for t in turns) == SEEKER_LINES + SUPPORTER_LINES

    code, out, err = cli(capsys, "report", store_path, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["cost_unknown_requests"] == {"seeker": SEEKER_LINES, "supporter": SUPPORTER_LINES}
    # the 0s in the NOT NULL columns are in no sum: no request is claimed to have cost 0 tokens
    assert report["cost"]["tokens"]["seeker"] == report["cost"]["tokens"]["supporter"] == {"input": 0, "output": 0}
    assert all(r.requests == 0 for r in rows) and sum(r.unknown for r in rows) == SEEKER_LINES + SUPPORTER_LINES
    code, out, err = cli(capsys, "report", store_path)
    assert code == 0, err
    assert f"not counted, tokens unknown: {SEEKER_LINES} seeker requests, {SUPPORTER_LINES} supporter requests" in out

    # priced, their cost is unknown (None), not $0, and so is every sum they are part of
    price = Price(input=1.0, output=2.0)
    cost = cost_of(rows, Prices({"": price}, {"llama3": price}, price, None), ["llama3"])
    assert cost.data()["by_role"]["seeker"] is None and cost.data()["by_role"]["supporter"] is None
    assert cost.total_usd is None and cost.data()["by_supporter"] == {"llama3": None}
    assert all(tally.usd is None for tally in cost.episodes.values()) and len(cost.episodes) == 3
    assert "not counted, tokens unknown: 6 seeker requests, 6 supporter requests" in cost_lines(cost)


def test_the_unknown_usage_survives_a_jsonl_export_and_import(tmp_path: Path, result_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    store_path = _imported(tmp_path, result_file, capsys)
    archive = export(store_path, tmp_path / "out", capsys)
    assert {t["usage"] for line in map(json.loads, archive.read_text(encoding="utf-8").splitlines()) if "turns" in line
            for t in line["turns"]} == {"reported", UNKNOWN_USAGE}
    copy = tmp_path / "copy.sqlite"
    code, _, err = cli(capsys, "import", copy, archive)
    assert code == 0, err
    with Store.open(store_path, readonly=True) as a, Store.open(copy, readonly=True) as b:
        assert [(t.episode_key, t.idx, t.usage) for t in a.turns()] == [(t.episode_key, t.idx, t.usage) for t in b.turns()]
        assert sorted(usage(a)) == sorted(usage(b))
    code, out, _ = cli(capsys, "report", copy, "--format", "json")
    assert code == 0 and json.loads(out)["cost_unknown_requests"] == {"seeker": SEEKER_LINES, "supporter": SUPPORTER_LINES}


def test_a_dry_run_refuses_to_calibrate_from_imported_transcripts(tmp_path: Path, result_file: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store_path = _imported(tmp_path, result_file, capsys)
    with pytest.raises(ValueError, match="none of its 3 finished episodes has known seeker and supporter token counts"):
        Calibration.read(store_path)
    cfg = write_config(tmp_path / "run.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"})
    code, out, err = cli(capsys, "run", cfg, "--dry-run", "--calibrate", store_path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(store_path) in err and "known seeker and supporter token counts" in err

    # a store imported before the turns were marked unknown (usage 'reported', 0 tokens) is refused too
    with Store.open(store_path) as store:
        store._conn.execute("UPDATE turns SET usage = 'reported'")
        store._conn.commit()
    with pytest.raises(ValueError, match="none of its 3 finished episodes"):
        Calibration.read(store_path)


async def test_a_pilot_with_imported_episodes_calibrates_from_its_own_only(tmp_path: Path, result_file: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pilot = await make_run(tmp_path / "pilot.sqlite")
    alone = Calibration.read(pilot)
    code, _, err = cli(capsys, "import", pilot, result_file, "--merge")
    assert code == 0, err
    mixed = Calibration.read(pilot)
    assert mixed.left_out == 3 and alone.left_out == 0
    assert mixed.episodes == alone.episodes, "the imported episodes add nothing, not 0 tokens each"
    assert mixed.replies == alone.replies
