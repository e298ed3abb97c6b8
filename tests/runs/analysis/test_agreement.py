"""Agreement statistics against hand-computed examples: Krippendorff's alpha, judge-vs-human from the store, symmetry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from esc_eval.runs.analysis.agreement import confusion_matrix, krippendorff_alpha, store_agreement
from esc_eval.runs.analysis.report import ReportError, render_agreement, report_command
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from tests.runs.annotation.helpers import key, make_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_alpha_hand_computed_small_example() -> None:
    """Units (0,0), (1,2), (2,2), two annotators each.

    Coincidences: o00 = 2, o12 = o21 = 1, o22 = 2; margins n0 = 2, n1 = 1, n2 = 3; n = 6.
    Ordinal distances: d01 = (n0+n1 - (n0+n1)/2)^2 = 1.5^2 = 2.25; d12 = (n1+n2 - (n1+n2)/2)^2 = 2^2 = 4;
    d02 = (n0+n1+n2 - (n0+n2)/2)^2 = 3.5^2 = 12.25.
    Observed: o12*d12 + o21*d12 = 8. Expected: 2*(n0*n1*d01 + n1*n2*d12 + n0*n2*d02) = 2*(4.5 + 12 + 73.5) = 180.
    alpha = 1 - (n-1) * 8 / 180 = 1 - 40/180 = 7/9.
    Interval: observed 2*1 = 2; expected 2*(2*1*1 + 1*3*1 + 2*3*4) = 58; alpha = 1 - 5*2/58 = 24/29.
    Nominal: observed 2; expected 2*(2*1 + 1*3 + 2*3) = 22; alpha = 1 - 5*2/22 = 6/11.
    """
    units = [[0, 0], [1, 2], [2, 2]]
    assert krippendorff_alpha(units) == pytest.approx(7 / 9)
    assert krippendorff_alpha(units, "interval") == pytest.approx(24 / 29)
    assert krippendorff_alpha(units, "nominal") == pytest.approx(6 / 11)


def test_alpha_krippendorff_2011_reliability_data() -> None:
    """The worked example of Krippendorff (2011), 4 coders x 12 units with missing values.

    Published: nominal 0.743, ordinal 0.815, interval 0.849.
    """
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [list(unit) for unit in zip(*coders)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha([[3, 3], [4, 4]]) == 1.0
    assert math.isnan(krippendorff_alpha([[2, 2], [2, 2]]))      # no variation
    assert math.isnan(krippendorff_alpha([[1], [2]]))            # nothing pairable
    assert krippendorff_alpha([[0, 4], [4, 0]]) < 0              # systematic disagreement
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2]], "cosine")


JUDGE = {0: {"fluency": 4, "empathic": 3}, 1: {"fluency": 2, "empathic": 0}, 2: {"fluency": 3, "empathic": 2},
         3: {"fluency": 1, "empathic": 4}}
HUMAN = {  # ann1 and ann2 on every item, ann3 on item 0 only
    "ann1": {0: {"fluency": 4, "empathic": 3}, 1: {"fluency": 1, "empathic": 0},
             2: {"fluency": 3, "empathic": 4}, 3: {"fluency": 3, "empathic": 2}},
    "ann2": {0: {"fluency": 4, "empathic": 2}, 1: {"fluency": 1, "empathic": 1},
             2: {"fluency": 2, "empathic": 4}, 3: {"fluency": 3, "empathic": 2}},
    "ann3": {0: {"fluency": 3, "empathic": 2}},
}


def _labelled_store(tmp_path: Path, judge: dict[int, dict[str, int]] = JUDGE,
                    human: dict[str, dict[int, dict[str, int]]] = HUMAN) -> Path:
    path = make_store(tmp_path / "run.sqlite", judge)
    store = Store.open(path)
    rows = []
    for who, items in human.items():
        for index, labels in items.items():
            rows += [(key(index), who, dim, label, 5.0) for dim, label in labels.items()]
    store.add_annotations(rows)
    store.close_sync()
    return path


def _agreement(path: Path) -> dict:
    store = Store.open(path, readonly=True)
    try:
        return store_agreement(store)
    finally:
        store.close_sync()


def test_store_agreement_hand_computed(tmp_path: Path) -> None:
    """The judge against each annotator of an episode, the episode scoring the share it matches.

    Fluency, judge 4,2,3,1: item0 vs (4,4,3) exact 2/3, soft 1; item1 vs (1,1) 0, 1; item2 vs (3,2) 1/2, 1;
    item3 vs (3,3) 0, 0. ACC = (2/3 + 1/2)/4 = 7/24, ACC_soft = 3/4.
    Empathic, judge 3,0,2,4: item0 vs (3,2,2) 1/3, 1; item1 vs (0,1) 1/2, 1; item2 vs (4,4) 0, 0; item3 vs (2,2) 0, 0.
    ACC = (1/3 + 1/2)/4 = 5/24, ACC_soft = 2/4.
    ann1 alone on fluency: 4,1,3,3 -> exact 2/4, soft 3/4; ann3 alone: item0 only, 3 vs 4 -> 0, 1.
    """
    result = _agreement(_labelled_store(tmp_path))
    assert result["dimensions"]["fluency"] == {"name": "Fluency", "acc": pytest.approx(7 / 24), "acc_soft": 0.75, "n": 4}
    assert result["dimensions"]["empathic"] == {"name": "Empathy", "acc": pytest.approx(5 / 24), "acc_soft": 0.5, "n": 4}
    assert result["average"] == {"acc": pytest.approx(0.25), "acc_soft": 0.625}
    assert result["unit"] == "episodes" and result["cards"] == {"matched": 4, "only_human": 0, "only_judge": 0}
    assert result["by_annotator"]["ann1"]["fluency"] == {"acc": 0.5, "acc_soft": 0.75, "n": 4}
    assert result["by_annotator"]["ann3"]["fluency"] == {"acc": 0.0, "acc_soft": 1.0, "n": 1}
    assert result["annotators"] == ["ann1", "ann2", "ann3"]
    # fluency units: (4,4,3), (1,1), (3,2), (3,3) -> the function on the same units by hand
    assert result["alpha"]["fluency"]["alpha"] == pytest.approx(krippendorff_alpha([[4, 4, 3], [1, 1], [3, 2], [3, 3]]))
    assert result["alpha"]["fluency"]["items"] == 4 and result["alpha"]["fluency"]["labels"] == 9
    matrix = result["confusion"]["fluency"]           # row human, column judge; one count per annotator's label
    assert matrix[4][4] == 2 and matrix[3][4] == 1 and matrix[1][2] == 2 and matrix[3][3] == 1 and matrix[2][3] == 1
    assert matrix[3][1] == 2 and sum(map(sum, matrix)) == 9
    text = render_agreement(result, "table")
    assert "α (annotators)" in text and "Krippendorff" in text


def _mirrored(labels: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
    return {item: {dim: 4 - label for dim, label in dims.items()} for item, dims in labels.items()}


def test_swapping_annotators_or_mirroring_the_scale_mirrors_the_agreement(tmp_path: Path) -> None:
    """Two annotators one label apart on every item: against each annotator the judge matches half of them,
    whatever end of the scale; a consensus breaking ties downwards made it 0 or 1 depending on the direction."""
    base = _agreement(_labelled_store(tmp_path / "base"))
    swapped = _agreement(_labelled_store(tmp_path / "swapped", human={"ann1": HUMAN["ann2"], "ann2": HUMAN["ann1"],
                                                                       "ann3": HUMAN["ann3"]}))
    mirrored = _agreement(_labelled_store(tmp_path / "mirrored", _mirrored(JUDGE),
                                          {who: _mirrored(items) for who, items in HUMAN.items()}))
    for other in (swapped, mirrored):
        assert other["dimensions"] == base["dimensions"] and other["average"] == base["average"]
        assert other["alpha"] == base["alpha"]
    assert swapped["by_annotator"]["ann1"] == base["by_annotator"]["ann2"]
    assert swapped["confusion"] == base["confusion"]
    for dim, matrix in base["confusion"].items():
        assert mirrored["confusion"][dim] == [row[::-1] for row in matrix[::-1]]
    apart = {"ann1": {i: {"fluency": 3} for i in range(4)}, "ann2": {i: {"fluency": 4} for i in range(4)}}
    for judge_label, human in ((3, apart), (1, {who: _mirrored(items) for who, items in apart.items()})):
        tie = _agreement(_labelled_store(tmp_path / f"tie{judge_label}", {i: {"fluency": judge_label} for i in range(4)}, human))
        assert tie["dimensions"]["fluency"]["acc"] == 0.5 and tie["dimensions"]["fluency"]["acc_soft"] == 1.0


def test_alpha_of_a_units_table_by_hand() -> None:
    """fluency units (4,4,3), (1,1), (3,2), (3,3): m = 3, 2, 2, 2.

    Coincidences: unit 1 adds 1/2 per ordered pair: o44 += 1, o43 = o34 += 1; unit 2: o11 += 2;
    unit 3: o32 = o23 += 1; unit 4: o33 += 2. So o11=2, o23=o32=1, o33=2, o34=o43=1, o44=1.
    Margins: n1 = 2, n2 = 1, n3 = 4, n4 = 2; n = 9.
    Ordinal d: d23 = (1+4 - 2.5)^2 = 6.25; d34 = (4+2 - 3)^2 = 9; d12 = (2+1 - 1.5)^2 = 2.25;
    d13 = (2+1+4 - 3)^2 = 16; d14 = (9 - 2)^2 = 49; d24 = (1+4+2 - 1.5)^2 = 30.25.
    Observed = 2*1*6.25 + 2*1*9 = 30.5.
    Expected = 2*(n1n2 d12 + n1n3 d13 + n1n4 d14 + n2n3 d23 + n2n4 d24 + n3n4 d34)
             = 2*(2*2.25 + 8*16 + 4*49 + 4*6.25 + 2*30.25 + 8*9) = 2*(4.5+128+196+25+60.5+72) = 972.
    alpha = 1 - 8 * 30.5 / 972 = 1 - 244/972.
    """
    assert krippendorff_alpha([[4, 4, 3], [1, 1], [3, 2], [3, 3]]) == pytest.approx(1 - 244 / 972)


def test_confusion_matrix_skips_missing() -> None:
    matrix = confusion_matrix({"a": {"x": 2}, "b": {"x": -1}, "c": {"x": None}}, {"a": {"x": 3}, "b": {"x": 1}, "c": {"x": 1}}, "x")
    assert matrix[3][2] == 1 and sum(map(sum, matrix)) == 1


def test_report_agreement_from_the_store_cli_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _labelled_store(tmp_path)
    data = json.loads(report_command(path, "json", None, [], True, None, None))
    assert data["dimensions"]["fluency"]["acc"] == pytest.approx(7 / 24) and data["alpha"]["empathic"]["items"] == 4
    assert data["unit"] == "episodes" and data["by_annotator"]["ann2"]["fluency"]["acc"] == 0.25
    png = tmp_path / "confusion.png"
    assert main(["report", str(path), "--agreement", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "ACC_soft" in out and "α (annotators)" in out and "75.0%" in out
    assert "4 episodes in both" in out and "against each annotator" in out
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert main(["report", str(path), "--agreement", "--format", "csv"]) == 0


def test_report_agreement_without_labels_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_store(tmp_path / "run.sqlite", {0: {"fluency": 3}})
    with pytest.raises(ReportError, match="no human labels"):
        report_command(path, "table", None, [], True, None, None)
    assert main(["report", str(path), "--agreement"]) == 2
    assert "no human labels" in capsys.readouterr().err


def test_analysis_does_not_import_annotation() -> None:
    """Agreement lives in esc_eval.runs.analysis.agreement; annotation depends on analysis, never the other way (no cycle),
    not even through an import inside a function."""
    import ast

    root = Path(__file__).resolve().parents[3]
    found = []
    for path in sorted((root / "runs" / "analysis").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])]
            if isinstance(node, (ast.Import, ast.ImportFrom)) and any(n.startswith("esc_eval.runs.annotation") for n in names):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, found
