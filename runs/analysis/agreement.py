"""Judge-human agreement, in one place: ESC-Eval's Table 4 (``agreement_report`` against a human score
file; ``store_agreement`` against the store's own annotations) and the statistics behind it.

Several annotators per item: the judge is compared with each annotator of the item and the item
scores the share it matches (``esc_eval.runs.analysis.scoring.agreement``), so no annotator and no
end of the scale is preferred; ``by_annotator`` gives each annotator's own rates. One label per
item, where a file needs one, is ``consensus`` (``esc_eval.agents.judge.consensus``: majority,
ties to the rounded mean, halves to the even label). Krippendorff's alpha (``krippendorff_alpha``,
ordinal metric, by the ``krippendorff`` package) measures how far the annotators agree beyond
chance, per dimension, over the items with two labels or more. The judge's label of an episode is
``esc_eval.runs.store.final_labels`` (its first sample). Both results share one shape
(``_result``): ``store``, ``human``, ``supporter``, ``language``, ``unit`` (what an item is:
``cards`` for a score file, ``episodes`` for the store's annotations), ``cards`` (items matched,
only_human, only_judge, counted in ``unit``), ``dimensions`` (``{key: {"name", "acc", "acc_soft",
"n"}}``), ``average`` and ``confusion`` (``{key: 5×5}``, row human, column judge).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from esc_eval.agents.judge.consensus import consensus
from esc_eval.agents.judge.profiles import DIMENSIONS, LABELS, PAPER_NAMES
from esc_eval.runs.analysis.leaderboard import ReportError
from esc_eval.runs.analysis.scoring import agreement
from esc_eval.runs.store import Store, final_labels

_Key = TypeVar("_Key", bound=Hashable)

HumanLabel = int | None | Sequence[int | None]
"""An item's human label on one dimension: one label, or one per annotator."""


# -- statistics ---------------------------------------------------------------------


def krippendorff_alpha(units: Iterable[Sequence[int | None]], metric: Literal["ordinal", "interval", "nominal"] = "ordinal") -> float:
    """Krippendorff's alpha for integer labels, ``metric`` ``ordinal`` (default), ``interval`` or ``nominal``.

    Each unit (item) is the sequence of labels it received (``None`` for a missing label;
    any order, any number of annotators), so it goes to the ``krippendorff`` package as
    value counts per unit. Units with fewer than two labels are not pairable and are left
    out. Returns ``nan`` when no unit is pairable or every pairable label is the same
    (no variation: alpha is undefined), where the package would raise.

    Example (hand-computed in tests/runs/analysis/test_agreement.py):
        >>> round(krippendorff_alpha([[0, 0], [1, 2], [2, 2]]), 6)
        0.777778
    """
    import krippendorff

    if metric not in ("ordinal", "interval", "nominal"):
        raise ValueError(f"unknown metric {metric!r} (use ordinal, interval or nominal)")
    pairable = [values for values in ([v for v in unit if v is not None] for unit in units) if len(values) >= 2]
    domain = sorted({v for values in pairable for v in values})
    if len(domain) < 2:
        return math.nan
    counts = [[values.count(v) for v in domain] for values in pairable]
    return float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=metric))


def confusion_matrix(judge: Mapping[_Key, Mapping[str, int | None]], human: Mapping[_Key, Mapping[str, HumanLabel]],
                     dimension: str) -> list[list[int]]:
    """5×5 counts: row = human label, column = judge label; one count per annotator's label of an item, both 0..4."""
    matrix = [[0] * len(LABELS) for _ in LABELS]
    for key, labels in judge.items():
        ours, theirs = labels.get(dimension), human.get(key, {}).get(dimension)
        for label in theirs if isinstance(theirs, Sequence) else [theirs]:
            if ours is not None and label is not None and ours in LABELS and label in LABELS:
                matrix[label][ours] += 1
    return matrix


# -- human labels ----------------------------------------------------------------------


def human_labels(store: Store) -> dict[str, dict[str, dict[str, int]]]:
    """Episode key -> annotator -> {dimension: label}."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in store.annotations():
        out[row.episode_key][row.annotator][row.dimension] = row.label
    return {key: {a: dict(labels) for a, labels in by.items()} for key, by in out.items()}


def annotator_labels(labels: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, list[int]]]:
    """Episode key -> {dimension: its annotators' labels, in the order of the annotators' names}."""
    out: dict[str, dict[str, list[int]]] = {}
    for key, by in labels.items():
        per_dim: dict[str, list[int]] = defaultdict(list)
        for _, dims in sorted(by.items()):
            for dim, label in dims.items():
                per_dim[dim].append(label)
        out[key] = dict(per_dim)
    return out


def consensus_labels(labels: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Episode key -> {dimension: ``consensus`` of its annotators' labels}."""
    return {key: {dim: consensus(values) for dim, values in dims.items()} for key, dims in annotator_labels(labels).items()}


# -- agreement --------------------------------------------------------------------------


def _choose(store: Store, supporter: str | None, language: str | None) -> tuple[str, str]:
    """The one (supporter, language) of the store's finished episodes that ``supporter`` / ``language`` pick."""
    pairs = sorted({(e.supporter, e.language) for e in store.episodes(status="done")})
    matching = [p for p in pairs if (supporter is None or p[0] == supporter) and (language is None or p[1] == language)]
    if not matching:
        have = ", ".join(f"{s} ({lang})" for s, lang in pairs) or "none"
        wanted = " ".join(filter(None, [f"supporter {supporter!r}" if supporter else "", f"language {language!r}" if language else ""]))
        raise ReportError(f"{store.path}: no finished episodes{' of ' + wanted if wanted else ''} (finished: {have})")
    if len(matching) > 1:
        options = ", ".join(f"{s} ({lang})" for s, lang in matching)
        raise ReportError(f"{store.path}: holds several supporters or languages ({options}); choose one with supporter and language")
    return matching[0]


def judge_labels(store: Store, supporter: str, language: str) -> dict[str, dict[str, int | None]]:
    """Card index (as text) -> {dimension: final judge label (the first sample), ``None`` where the judge call failed}."""
    index_of: dict[str, str] = {}
    for e in store.episodes(status="done", supporter=supporter, language=language):
        card = str(e.card_index)
        if card in index_of.values():
            raise ReportError(f"{store.path}: supporter {supporter!r} ({language}) has several episodes of card {card} "
                              "(personas or repeats); agreement needs one episode per card")
        index_of[e.key] = card
    by_episode = final_labels(store.final_scores())
    return {card: dict(by_episode.get(key, {})) for key, card in index_of.items()}


def _result(store: Store, human_name: str, supporter: str, language: str, judge: Mapping[str, Mapping[str, int | None]],
            human: Mapping[str, Mapping[str, HumanLabel]], order: Sequence[str], unit: str) -> dict[str, Any]:
    """The agreement of ``judge`` with ``human`` (same item keys, items are ``unit``) over the dimensions ``order``."""
    computed = agreement(judge, human)
    dimensions = {d: {"name": PAPER_NAMES.get(d, d), **computed.get(d, {"acc": math.nan, "acc_soft": math.nan, "n": 0})}
                  for d in order}
    scored = [v for v in dimensions.values() if v["n"]]
    average = {rate: (sum(float(v[rate]) for v in scored) / len(scored)) if scored else math.nan for rate in ("acc", "acc_soft")}
    return {
        "store": str(store.path),
        "human": human_name,
        "supporter": supporter,
        "language": language,
        "unit": unit,
        "cards": {"matched": sum(1 for k in judge if k in human), "only_human": sum(1 for k in human if k not in judge),
                  "only_judge": sum(1 for k in judge if k not in human)},
        "dimensions": dimensions,
        "average": average,
        "confusion": {d: confusion_matrix(judge, human, d) for d in order},
    }


def _paper_order(dims: Iterable[str], rest: Iterable[str]) -> list[str]:
    """The paper's dimensions first, in its order, then ``rest`` (the others, in the order given)."""
    present = set(dims)
    return [d for d in DIMENSIONS if d in present] + [d for d in rest if d not in DIMENSIONS]


def agreement_report(store: Store, human_scores_path: Path, *, supporter: str | None = None,
                     language: str | None = None) -> dict[str, Any]:
    """ESC-Eval Table 4: per dimension, how often the store's judge agrees with a human score file.

    The human file is an ESC-Eval score file (``{"0": {"fluency": 3, ...}, ...}``, keyed by
    card index); it is compared with the final judge labels of the finished episodes of one
    supporter and language (card index to card index). Labels -1 and failed judge calls are
    left out. ``acc`` is the exact-match rate, ``acc_soft`` the rate of ``|judge - human| <= 1``;
    rates are ``nan`` when ``n == 0``.

    Raises:
        ReportError: a bad human score file, or the store holds several supporters or
            languages and ``supporter`` / ``language`` do not choose one.
    """
    from esc_eval.runs.formats.importing import ResultFileError, read_score_file

    try:
        human = read_score_file(Path(human_scores_path))
    except ResultFileError as exc:
        raise ReportError(str(exc)) from None
    supporter, language = _choose(store, supporter, language)
    judge = judge_labels(store, supporter, language)
    computed = list(agreement(judge, human))
    return _result(store, str(human_scores_path), supporter, language, judge, human, _paper_order(computed, computed), "cards")


def store_agreement(store: Store, *, supporter: str | None = None, language: str | None = None) -> dict[str, Any]:
    """Judge vs the store's human labels, inter-annotator alpha and confusion matrices.

    Items are the finished episodes (of ``supporter`` / ``language`` when given) holding
    human labels; the judge is compared with each annotator of an item (``scoring.agreement``),
    and the confusion matrices count every annotator's label.

    Returns:
        the shape of ``agreement_report``, plus ``alpha``: ``{key: {"alpha", "items", "labels"}}``
        (ordinal Krippendorff's alpha over items with two labels or more), ``annotators`` (names)
        and ``by_annotator`` (``{name: {key: {"acc", "acc_soft", "n"}}}``, the judge against that
        annotator alone).
    """
    episodes = {e.key for e in store.episodes(status="done", supporter=supporter, language=language, with_turns=True)}
    per_annotator = {key: by for key, by in human_labels(store).items() if key in episodes}
    if not per_annotator:
        raise ReportError(f"{store.path}: no human labels{' for these episodes' if supporter or language else ''} "
                          "(label with esc-eval annotate, or give --agreement SCORES.json)")
    human = annotator_labels(per_annotator)
    judge = {key: labels for key, labels in final_labels(store.final_scores()).items() if key in episodes}
    dims_seen = {d for labels in human.values() for d in labels}
    order = _paper_order(dims_seen, sorted(dims_seen))
    annotators = sorted({a for by in per_annotator.values() for a in by})
    result = _result(store, f"annotations ({len(annotators)} annotators; the judge against each, averaged per episode)",
                     supporter or "all supporters", language or "all languages", judge, human, order, "episodes")
    alpha = {}
    for d in order:
        units = [[dims[d] for dims in by.values() if d in dims] for by in per_annotator.values()]
        pairable = [u for u in units if len(u) >= 2]
        alpha[d] = {"alpha": krippendorff_alpha(pairable), "items": len(pairable), "labels": sum(len(u) for u in pairable)}
    confusion = result.pop("confusion")  # keys in the order the JSON output has always had
    by_annotator = {}
    for name in annotators:
        alone = agreement(judge, {key: by[name] for key, by in per_annotator.items() if name in by})
        by_annotator[name] = {d: alone.get(d, {"acc": math.nan, "acc_soft": math.nan, "n": 0}) for d in order}
    return result | {"alpha": alpha, "annotators": annotators, "by_annotator": by_annotator, "confusion": confusion}
