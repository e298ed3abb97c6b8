"""The leaderboard: ``build_report`` assembles a typed ``Report`` from a store (ESC-Eval's numbers with intervals).

Only the whole-episode scores (``round == FINAL_ROUND``) of finished episodes (status ``done``)
count. Per dimension a row holds:

* ``value`` (= ``mean``): ESC-Eval's leaderboard number, mean(label) / 4 × 100, with every
  role card counted once: the mean over cards of the card's mean over its episodes of each
  episode's mean valid label (one label unless ``[judge] samples = k``) × 25. It is ESC-Eval's
  number when each card has one episode; ``mean_episodes`` weighs episodes instead;
* ``ci_low`` / ``ci_high``: its 95% t interval over card means, inside [0, 100];
  ``se_clustered``: its standard error; ``n_episodes`` / ``n_cards``; ``flags``: ``small_n``
  (fewer than 10 cards), ``no_spread`` (every card the same; the interval is widened)
  (``esc_eval.runs.analysis.statistics``; docs/statistics.md);
* ``n``: valid labels; ``n_unparsed``: labels -1 (the judge's reply held no label);
  ``n_failed``: judge calls that failed; ``n_missing``: labels a finished episode lacks.

``compare`` adds paired comparisons between supporters and rank intervals
(``esc_eval.runs.analysis.comparisons``), ``corrected`` prediction-powered means from human labels,
``power_delta`` the cards needed to detect a difference. A store whose episodes several seekers
played (``[[seekers]]``) also gets ``seeker_agreement``: whether the seekers rank the supporters
alike (``esc_eval.runs.analysis.robustness``). Views of a report are in
``esc_eval.runs.analysis.render`` (text) and ``esc_eval.runs.analysis.plots`` (PNG).

Dimensions are shown with the paper's names, in its order: Fluency, Expression,
Empathy, Information, Skillful, Humanoid, Overall (any other dimension a custom
judge profile scored follows, under its key).

Example::

    with Store.open("run.sqlite", readonly=True) as store:
        report = build_report(store, by=("supporter", "language"))
    print(render(report, "md"))
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

from esc_eval.agents.judge.profiles import DIMENSIONS, LABELS, PAPER_NAMES, POINTS, to_points
from esc_eval.runs.store import EpisodeRecord, Store, final_labels

if TYPE_CHECKING:  # numpy and scipy load when a report is built, not whenever the CLI starts
    import numpy as np

    from esc_eval.runs.analysis.comparisons import CardTable, PairComparison, PowerRow, Rank
    from esc_eval.runs.analysis.robustness import RankAgreement, SeekerTable
    from esc_eval.runs.analysis.statistics import JudgeNoise, PPIEstimate

#: Episode columns a report can be grouped by.
GROUP_COLUMNS: tuple[str, ...] = ("supporter", "language", "category", "source", "persona", "outcome", "seeker")
#: Output formats of ``render``.
FORMATS: tuple[str, ...] = ("table", "md", "json", "csv")

class ReportError(ValueError):
    """A report cannot be made from the given input (unknown group or format, bad score file, missing matplotlib)."""


@dataclass(frozen=True)
class DimensionStats:
    """One dimension of one report row; means and intervals are ``nan`` when undefined.

    ``value`` (= ``mean``) is the mean over the row's role cards of the card's mean over its
    scored episodes of each episode's mean label × 25 (with ``[judge] samples = k`` an episode
    has k labels): every card counts once. ``mean_episodes`` is the plain mean over episodes.
    ``ci_low`` / ``ci_high`` is the 95% t interval over card means, ``se_clustered`` its
    standard error (``esc_eval.runs.analysis.statistics.cluster_mean``). ``small`` marks rows
    with fewer than ``SMALL_N`` cards, ``no_spread`` rows whose cards all have one value (the
    interval is widened); ``flags`` lists both. ``noise`` splits label variance into judge
    and episode parts (judge samples only); ``corrected`` is the prediction-powered
    estimate from human labels (``report --corrected`` only).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    n_unparsed: int
    n_failed: int
    n_missing: int
    se_clustered: float = math.nan
    n_episodes: int = 0
    n_cards: int = 0
    noise: JudgeNoise | None = None
    corrected: PPIEstimate | None = None
    mean_episodes: float = math.nan
    no_spread: bool = False

    @property
    def mean(self) -> float:
        return self.value

    @property
    def small(self) -> bool:
        from esc_eval.runs.analysis.statistics import SMALL_N

        return self.n_cards < SMALL_N

    @property
    def flags(self) -> tuple[str, ...]:
        """``small_n`` and ``no_spread``, where due (scored rows only)."""
        if not self.n_episodes:
            return ()
        return tuple(name for name, on in (("small_n", self.small), ("no_spread", self.no_spread)) if on)


@dataclass(frozen=True)
class ReportRow:
    """One group (``group`` maps each ``Report.by`` column to its value) and its statistics.

    ``episodes_done`` / ``episodes_failed`` / ``episodes_unfinished`` count the group's
    episodes by status (unfinished: planned or running). ``dimensions`` maps each
    dimension key of ``Report.dimensions`` to its ``DimensionStats``.
    """

    group: Mapping[str, str]
    episodes_done: int
    episodes_failed: int
    episodes_unfinished: int
    dimensions: Mapping[str, DimensionStats]

    @property
    def label(self) -> str:
        return " / ".join(self.group.values())


@dataclass(frozen=True)
class Report:
    """The leaderboard: rows in the order their groups first appear in the run's plan.

    ``comparisons`` and ``ranks`` (``--compare``) and ``power`` (``--power DELTA``) are
    between supporters, over all the report's episodes whatever ``by`` is. ``seeker_agreement``
    (stores with several seekers) compares the supporter rankings each two seekers give.
    """

    store: str
    by: tuple[str, ...]
    dimensions: tuple[str, ...]
    rows: tuple[ReportRow, ...] = field(default_factory=tuple)
    samples: int = 1
    corrected: bool = False
    comparisons: tuple[PairComparison, ...] | None = None
    ranks: Mapping[str, Sequence[Rank]] | None = None
    power: tuple[PowerRow, ...] | None = None
    delta: float | None = None
    seeker_agreement: tuple[RankAgreement, ...] | None = None
    echoes: Mapping[str, int] = field(default_factory=dict)
    """Dimension -> labels read from replies that echo the rubric (``echo_labels``); empty when there are none."""

    def name(self, dimension: str) -> str:
        """The paper's name of ``dimension`` (its key when the paper has none)."""
        return PAPER_NAMES.get(dimension, dimension)


# -- building -----------------------------------------------------------------------


def check_by(by: Sequence[str]) -> tuple[str, ...]:
    """The group columns ``by`` checked (``ReportError`` names a bad one); empty means supporter."""
    columns = tuple(by) or ("supporter",)
    for column in columns:
        if column not in GROUP_COLUMNS:
            raise ReportError(f"cannot group by {column!r} (use any of {', '.join(GROUP_COLUMNS)})")
    if len(set(columns)) != len(columns):
        raise ReportError(f"group columns repeat: {', '.join(columns)}")
    return columns


def _human_values(store: Store) -> dict[tuple[str, str], float]:
    """(episode, dimension) -> the annotators' mean label × 25."""
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in store.annotations():
        found[(row.episode_key, row.dimension)].append(row.label)
    return {slot: to_points(sum(labels) / len(labels)) for slot, labels in found.items()}


class Slots(NamedTuple):
    """A ``StoreRead``'s scored (episode, dimension) slots as arrays, in its ``labels``' order (plan order, dimension).

    ``episode`` indexes ``StoreRead.episodes`` (``len(episodes)``: an episode the read lacks),
    ``dimension`` indexes ``dimensions``; ``value`` is the slot's mean label × 25 and ``n`` its
    valid labels. ``card`` codes each episode's card (``language:card_index``) so that code
    order is the cards' sorted order: ``cluster_mean`` over codes gives what it gives over names;
    ``episode_card`` is each episode's card name.
    """

    episode: np.ndarray
    dimension: np.ndarray
    dimensions: tuple[str, ...]
    value: np.ndarray
    n: np.ndarray
    card: np.ndarray
    card_names: tuple[str, ...]
    episode_card: tuple[str, ...]


@dataclass(frozen=True)
class StoreRead:
    """What a report reads from a store, read and checked once: several reports of one store version share it (the viewer's).

    Per (episode, dimension) of the final scores: ``labels`` the valid labels 0..4 (one per
    judge sample), ``values`` their mean × 25, ``unparsed`` the answers without one (-1),
    ``failed`` the failed judge calls; ``samples`` per episode its highest sample + 1;
    ``first`` the label ESC-Eval compares (``final_labels``: first sample, ``None`` where failed;
    ``read_store(first_labels=True)`` only); ``replies`` the multi-line replies ``echo_labels`` reads.
    """

    episodes: tuple[EpisodeRecord, ...]
    seeker: str
    labels: Mapping[tuple[str, str], list[int]]
    unparsed: Mapping[tuple[str, str], int]
    failed: Mapping[tuple[str, str], int]
    samples: Mapping[str, int]
    values: Mapping[tuple[str, str], float]
    first: Mapping[str, Mapping[str, int | None]] = field(default_factory=dict)
    replies: Sequence[tuple[str, str, str]] = ()

    @functools.cached_property
    def slots(self) -> Slots:
        """The labels as arrays, built once per read: each report then groups them with numpy, not per label in Python."""
        import numpy as np

        position = {e.key: i for i, e in enumerate(self.episodes)}
        names = np.array([f"{e.language}:{e.card_index}" for e in self.episodes], dtype=str)
        card_names, card = np.unique(names, return_inverse=True)
        count = len(self.labels)
        keys, dims = zip(*self.labels) if count else ((), ())
        episode = np.fromiter(map(position.get, keys, itertools.repeat(len(self.episodes))), dtype=np.int64, count=count)
        codes = {d: i for i, d in enumerate(dict.fromkeys(dims))}
        dimension = np.fromiter(map(codes.__getitem__, dims), dtype=np.int64, count=count)
        value = np.fromiter(map(self.values.__getitem__, self.labels), dtype=float, count=count)
        n = np.fromiter(map(len, self.labels.values()), dtype=np.int64, count=count)
        return Slots(episode, dimension, tuple(codes), value, n, card.reshape(-1),
                     tuple(map(str, card_names)), tuple(names.tolist()))


_VALID = frozenset(LABELS)


def read_store(store: Store, *, first_labels: bool = False) -> StoreRead:
    """The store's episodes (plan order) and final judge scores, checked; ``ReportError`` names a label outside -1..4.

    ``first_labels``: also ``StoreRead.first`` (the viewer's episode rows), from the same read.
    """
    import numpy as np

    labels: dict[tuple[str, str], list[int]] = defaultdict(list)
    unparsed: dict[tuple[str, str], int] = defaultdict(int)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    scores = store.final_score_rows()               # plain tuples: no named tuple per score row
    one_each = False
    keys, dimensions, found_labels, statuses, sampled = zip(*scores) if scores else ((),) * 5
    samples = dict.fromkeys(keys, 1)
    several_samples = any(sampled)
    if several_samples:                             # judge samples: each episode's highest + 1
        for key, sample in zip(keys, sampled):
            samples[key] = max(samples[key], sample + 1)
    if set(statuses) <= {"ok"} and set(map(type, found_labels)) <= {int} and set(found_labels) <= _VALID:
        if several_samples:   # the usual store: every label valid, checked set-wise
            for slot, label in zip(zip(keys, dimensions), found_labels):
                labels[slot].append(label)
        else:                   # one sample: one label per (episode, dimension), listed at C speed
            labels.update(zip(zip(keys, dimensions), map(list, zip(found_labels))))
            one_each = True
    else:
        for key, dimension, label, status, _ in scores:
            if status != "ok":
                failed[(key, dimension)] += 1
            elif label is None or label == -1:
                unparsed[(key, dimension)] += 1
            elif isinstance(label, int) and not isinstance(label, bool) and label in LABELS:
                labels[(key, dimension)].append(label)
            else:
                raise ReportError(f"{store.path}: episode {key!r}, dimension {dimension!r}: "
                                  f"stored label {label!r} is not 0..4 or -1")
    found = list(labels.values())        # each slot's mean label × 25, as to_points(sum / len) gives it, at C speed
    means = (np.asarray(found_labels, dtype=float) if one_each     # one label a slot, in the labels' order: its own mean
             else np.fromiter(map(sum, found), dtype=float, count=len(found)) / np.fromiter(map(len, found), dtype=float, count=len(found)))
    values = dict(zip(labels, (means * POINTS).tolist()))
    return StoreRead(tuple(store.episodes()), seeker_label(store), labels, unparsed, failed, samples, values,
                     final_labels(scores) if first_labels else {}, store.labelled_multiline_replies())


def build_report(store: Store, *, by: Sequence[str] = ("supporter",), supporter: str | None = None,
                 language: str | None = None, compare: bool = False, corrected: bool = False,
                 power_delta: float | None = None, read: StoreRead | None = None) -> Report:
    """The leaderboard of ``store`` grouped by the episode columns ``by``.

    Args:
        store: an open store (read-only is enough).
        read: ``read_store(store)`` when the caller already holds it (several reports of one store).
        by: columns of ``GROUP_COLUMNS``, outermost first; empty means ``("supporter",)``.
        supporter / language: keep only the episodes of this supporter / language.
        compare: also compare every pair of supporters (``Report.comparisons``, ``Report.ranks``).
        corrected: also the prediction-powered estimate from the store's human labels.
        power_delta: also plan for detecting a difference of this many points (``Report.power``).

    Raises:
        ReportError: unknown group column, or a stored label outside -1..4.
    """
    import numpy as np

    from esc_eval.runs.analysis.comparisons import compare as compare_supporters
    from esc_eval.runs.analysis.comparisons import power as plan_power
    from esc_eval.runs.analysis.comparisons import ranks as supporter_ranks
    from esc_eval.runs.analysis.robustness import rank_agreement
    from esc_eval.runs.analysis.statistics import cluster_mean, judge_noise, ppi_mean

    columns = check_by(by)
    read = read or read_store(store)
    only, slots = read.seeker, read.slots
    chosen = [i for i, e in enumerate(read.episodes) if (supporter is None or e.supporter == supporter)
              and (language is None or e.language == language)]
    episodes = [read.episodes[i] for i in chosen]     # the rest column by column, at C speed where it can be
    seekers = [e.seeker or only for e in episodes]
    of = [seekers if c == "seeker" else list(map(str, map(attrgetter(c), episodes))) for c in columns]
    group_list = list(zip(*of)) if columns else [()] * len(episodes)
    statuses = [s if s in ("done", "failed") else "unfinished" for s in map(attrgetter("status"), episodes)]
    tally = Counter(zip(group_list, statuses))
    groups = {g: {s: tally[(g, s)] for s in ("done", "failed", "unfinished")} for g in dict.fromkeys(group_list)}
    done = {e.key: (g, card, e.supporter, seeker)         # key -> (group, card, supporter, seeker)
            for e, g, card, seeker, status in zip(episodes, group_list, map(slots.episode_card.__getitem__, chosen), seekers, statuses)
            if status == "done"}
    codes = {g: i for i, g in enumerate(dict.fromkeys(g for g, status in zip(group_list, statuses) if status == "done"))}
    group_of = np.full(len(read.episodes) + 1, -1, dtype=np.int64)   # per episode of the read: its group's index if done
    group_of[np.array(chosen, dtype=np.int64)] = np.fromiter(
        (codes[g] if status == "done" else -1 for g, status in zip(group_list, statuses)), dtype=np.int64, count=len(chosen))

    unparsed: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    failed: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    for counts_of, into in ((read.unparsed, unparsed), (read.failed, failed)):
        for (key, dim), n in counts_of.items():
            if key in done:
                into[(done[key][0], dim)] += n
    per_group = _per_group(slots, group_of, list(codes))
    labels, value = read.labels, read.values
    seen_dims = {dim for _, dim in per_group} | {dim for _, dim in unparsed} | {dim for _, dim in failed}
    samples = max((read.samples.get(key, 1) for key in done), default=1)
    dimensions = DIMENSIONS + tuple(sorted(seen_dims - set(DIMENSIONS)))
    human = _human_values(store) if corrected else {}
    none = np.zeros(0, dtype=np.int64)
    rows = []
    for group, counts in groups.items():
        stats = {}
        for dim in dimensions:
            scored = per_group.get((group, dim), none)     # slots in plan order
            owners = slots.episode[scored]
            estimate = cluster_mean(slots.value[scored], slots.card[owners])
            n_valid = int(slots.n[scored].sum())
            keys = [read.episodes[i].key for i in owners] if samples > 1 or corrected else []
            n_unparsed, n_failed = unparsed.get((group, dim), 0), failed.get((group, dim), 0)
            noise = (judge_noise([[x * POINTS for x in labels[(k, dim)]] for k in keys], [done[k][1] for k in keys])
                     if samples > 1 else None)
            ppi = None
            if corrected:
                marked = [k for k in keys if (k, dim) in human]
                rest = [k for k in keys if (k, dim) not in human]
                ppi = ppi_mean(np.array([value[(k, dim)] for k in rest]),
                               np.array([value[(k, dim)] for k in marked]),
                               np.array([human[(k, dim)] for k in marked]),
                               cards_unlabelled=np.array([done[k][1] for k in rest]),
                               cards_labelled=np.array([done[k][1] for k in marked]))
            stats[dim] = DimensionStats(
                value=estimate.mean, ci_low=estimate.ci_low, ci_high=estimate.ci_high, n=n_valid, n_unparsed=n_unparsed,
                n_failed=n_failed, n_missing=counts["done"] * samples - n_valid - n_unparsed - n_failed,
                se_clustered=estimate.se_clustered, n_episodes=estimate.n_episodes, n_cards=estimate.n_cards,
                noise=noise, corrected=ppi, mean_episodes=estimate.mean_episodes, no_spread=estimate.no_spread,
            )
        rows.append(ReportRow(dict(zip(columns, group)), counts["done"], counts["failed"], counts["unfinished"], stats))

    comparisons = ranked = planned = None
    if compare or power_delta is not None:
        supporters = list(dict.fromkeys(e.supporter for e in episodes))
        cards = _card_table({slot: v for slot, v in value.items() if slot[0] in done}, done)
        if compare:
            comparisons = tuple(compare_supporters(cards, supporters, dimensions))
            ranked = supporter_ranks(cards, supporters, dimensions)
        if power_delta is not None:
            planned = tuple(plan_power(cards, supporters, dimensions, power_delta))
    seekers = list(dict.fromkeys(e.seeker or only for e in episodes))
    agreement = None
    if len(seekers) > 1:
        supporters = list(dict.fromkeys(e.supporter for e in episodes))
        agreement = tuple(rank_agreement(_seeker_table({slot: v for slot, v in value.items() if slot[0] in done}, done), seekers,
                                         supporters, dimensions))
    return Report(str(store.path), columns, dimensions, tuple(rows), samples, corrected, comparisons, ranked, planned,
                  power_delta, agreement, echo_labels(store, set(done), read.replies))


def _per_group(slots: Slots, group_of: np.ndarray, groups: list[tuple[str, ...]]) -> dict[tuple[tuple[str, ...], str], np.ndarray]:
    """(group, dimension) -> the indices of its scored slots, in plan order: one stable sort instead of a pass per label."""
    import numpy as np

    found = group_of[slots.episode]
    kept = np.flatnonzero(found >= 0)
    code = found[kept] * max(1, len(slots.dimensions)) + slots.dimension[kept]
    order = np.argsort(code, kind="stable")
    code, kept = code[order], kept[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.zeros(0, dtype=np.int64)
    return {(groups[c // max(1, len(slots.dimensions))], slots.dimensions[c % max(1, len(slots.dimensions))]): part
            for c, part in zip(code[starts].tolist(), np.split(kept, starts[1:]))}


def echo_labels(store: Store, keys: set[str], replies: Sequence[tuple[str, str, str]] | None = None) -> dict[str, int]:
    """Dimension -> labels of episodes ``keys`` read from a reply that echoes the rubric and states no score.

    Such a reply ("0: The supporter's replies are largely unreadable...\n1:") holds no answer:
    our label rule leaves it -1, but ESC-Eval's rule (the ESC-RANK profile, kept as ESC-Eval
    has it) reads its first digit as the label. The report counts them so those means are not
    taken at face value. ``replies``: ``store.labelled_multiline_replies()`` when the caller holds them.
    """
    from esc_eval.agents.judge.labels import NO_LABEL, echoes_rubric, parse_label

    found: dict[str, int] = {}
    for key, dimension, raw in (store.labelled_multiline_replies() if replies is None else replies):
        if key in keys and echoes_rubric(raw) and parse_label(raw) == NO_LABEL:
            found[dimension] = found.get(dimension, 0) + 1
    return found


def seeker_label(store: Store) -> str:
    """What episodes stored without a seeker (before ``[[seekers]]``) were played by: the config's ``[seeker]`` model."""
    return str(((store.meta("config") or {}).get("seeker") or {}).get("model") or "seeker")


def several_seekers(store: Store) -> bool:
    """Whether more than one seeker played the store's episodes (``[[seekers]]``)."""
    return len(store.seekers()) > 1


def _card_table(value: Mapping[tuple[str, str], float],
                done: Mapping[str, tuple[tuple[str, ...], str, str, str]]) -> CardTable:
    """dimension -> supporter -> card -> mean over the supporter's episodes on the card (with any seeker) of their values."""
    sums: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for (key, dim), found in value.items():
        _, card, supporter, _ = done[key]
        sums[dim][supporter][card].append(found)
    return {d: {s: {c: sum(v) / len(v) for c, v in cards.items()} for s, cards in by_s.items()} for d, by_s in sums.items()}


def _seeker_table(value: Mapping[tuple[str, str], float],
                  done: Mapping[str, tuple[tuple[str, ...], str, str, str]]) -> SeekerTable:
    """dimension -> seeker -> supporter -> card -> mean of the values of that supporter's episodes with that seeker on the card."""
    sums: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for (key, dim), found in value.items():
        _, card, supporter, seeker = done[key]
        sums[dim][seeker][supporter][card].append(found)
    return {d: {k: {s: {c: sum(v) / len(v) for c, v in cards.items()} for s, cards in by_s.items()} for k, by_s in by_k.items()}
            for d, by_k in sums.items()}
