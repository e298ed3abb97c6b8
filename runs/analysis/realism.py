"""Seeker realism: how far simulated seekers are from real ones (``esc-eval seeker eval --reference HUMAN.json``).

Three views of the same per-dialogue features (``realism_features``):

* ``auc``: a classifier (scikit-learn's logistic regression on standardised features, a missing value imputed
  with the feature's median and flagged) is trained to tell the source's dialogues from the reference's, one
  example per dialogue, in stratified folds (so every dialogue is scored by a model that never saw it); ``auc``
  is the ROC AUC of those out-of-fold scores, averaged over 5 shuffles of the folds. ``auc_ci`` is a 95%
  percentile bootstrap interval that refits: each draw resamples each side's dialogues and cross-validates
  anew, so it holds the variance of training too (out-of-fold scores share their training rows, and a
  bootstrap of the scores alone covered "no difference" in 35 draws of 40). It errs wide: on two samples of one
  distribution it covered 0.5 in 198 draws of 200 (docs/seeker.md). 0.5: indistinguishable; 1: told apart.
* ``features``: per feature the mean over simulated and over human dialogues and their Wasserstein distance
  (``scipy.stats.wasserstein_distance``, in the feature's own unit) and that distance over the human values'
  standard deviation (``normalised``).
* ``index`` (0-100, 100 = human) = 50 x min(1, 2 (1 - auc)) + 50 x mean over features of exp(-normalised):
  it falls as the AUC rises above 0.5 and as any distance grows, and nothing else moves it.

``pairs`` (with ``cards build``'s report) put each simulated episode beside the human dialogue its card was
built from, with per-feature absolute differences.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from esc_eval.roles.esconv import dialog_record
from esc_eval.roles.persona_model import RoleBreakRule
from esc_eval.runs.analysis.realism_features import (
    FEATURES,
    LANGUAGES,
    detect_language,
    dialogue_features,
    merge_turns,
    seeker_turn_count,
    seeker_turns,
)
from esc_eval.runs.analysis.seeker import StoredEpisode

FOLDS = 5
REPEATS = 5
"""Shuffles of the folds the AUC is averaged over."""
RESAMPLES = 100
"""Bootstrap draws of the interval, each cross-validated anew."""


class RealismError(ValueError):
    """Bad input for a realism comparison: one line naming the file, record and field."""


@dataclass(frozen=True)
class HumanDialogue:
    """One reference dialogue: its item key (``FILESTEM:ID``, as ``cards build`` names source items) and turns."""

    key: str
    transcript: list[tuple[str, str]]


# --------------------------------------------------------------------------- reading dialogue files


def read_dialogue_file(path: Path, option: str = "--reference") -> list[HumanDialogue]:
    """ESConv-shaped dialogues: a ``.json`` list of ``{"dialog": [{"speaker", "content"}]}`` (an ``id`` is
    optional) or ``.jsonl`` lines of ``{"dialog": [{"role"|"speaker", "content"}]}``; speakers seeker/supporter.

    Raises ``RealismError`` naming the file, the record and the field.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RealismError(f"{option}: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RealismError(f"{option}: {path}: cannot read: {exc}") from None
    jsonl = Path(path).suffix.lower() == ".jsonl"
    parsed: list[Any] = []
    for number, line in enumerate(text.splitlines() if jsonl else [text], 1):
        try:
            if line.strip():
                parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RealismError(f"{option}: {path}: not JSON: {exc.msg} (line {number if jsonl else exc.lineno})") from None
    records = parsed if jsonl else (parsed[0] if parsed else None)
    if not isinstance(records, list) or not records:
        raise RealismError(f"{option}: {path}: expected a non-empty list of dialogues {{\"dialog\": [{{\"speaker\", \"content\"}}]}}")
    found = []
    for number, record in enumerate(records, 1):
        read = dialog_record(record, Path(path).stem, number, f"{option}: {path}: record {number}", RealismError)
        found.append(HumanDialogue(read.item, merge_turns(read.transcript)))
    return found


def file_episodes(path: Path) -> list[StoredEpisode]:
    """A dialogues file as a ``seeker eval`` source: seeker = the file's stem, no persona, no card facts."""
    dialogues = read_dialogue_file(path, "SOURCE")
    language = detect_language([text for d in dialogues for role, text in d.transcript if role == "seeker"])
    return [StoredEpisode({"key": d.key, "card": d.key, "seeker": Path(path).stem, "persona": None},  # type: ignore[dict-item]
                          d.transcript, [], (), language) for d in dialogues]


def is_store(path: Path) -> bool:
    """Whether ``path`` is an SQLite file (a store) rather than a dialogues file."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def reference_language(dialogues: Sequence[HumanDialogue]) -> str:
    return detect_language([text for d in dialogues for role, text in d.transcript if role == "seeker"])


def check_language(source: str, reference: str, path: Path) -> None:
    """Refuse comparing seekers across languages: the features (word lists, lengths) mean different things."""
    if source != reference or source not in LANGUAGES:
        raise RealismError(f"--reference: {path}: its dialogues are in {reference!r} but the source's are in {source!r}; "
                           "use a reference in the source's language")


def cards_report(path: Path) -> dict[str, str]:
    """Card id -> source item key from ``cards build``'s ``build-report.json``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RealismError(f"--cards-report: {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RealismError(f"--cards-report: {path}: cannot read: {exc}") from None
    entries = data.get("cards") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(c, dict) and "id" in c and "item" in c for c in entries):
        raise RealismError(f"--cards-report: {path}: field 'cards' must be a list of {{id, item}} (cards build's build-report.json)")
    return {str(c["id"]): str(c["item"]) for c in entries}


# --------------------------------------------------------------------------- the comparison


def rounds_of(transcripts: Sequence[Sequence[tuple[str, str]]]) -> int:
    """R: the most seeker turns any source dialogue has; each human dialogue is cut to its first R."""
    return max((seeker_turn_count(t) for t in transcripts), default=0)


def feature_matrix(transcripts: Sequence[Sequence[tuple[str, str]]], language: str, rounds: int,
                   rule: RoleBreakRule) -> np.ndarray:
    """One row per dialogue with a seeker turn, one column per feature (``nan`` where it does not apply)."""
    rows = [dialogue_features(t, language, rounds, rule) for t in transcripts]
    return np.array([[math.nan if r[name] is None else r[name] for name in FEATURES] for r in rows if r is not None],
                    dtype=float).reshape(-1, len(FEATURES))


def _standardised(x: np.ndarray) -> np.ndarray:
    """Features on one scale, a missing value replaced by the feature's median and flagged in a column of its own
    (missing where people have a value is itself a tell). Fitted on all rows once: it reads no labels, so
    nothing about a held-out dialogue's side leaks into its score."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return np.asarray(make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                    StandardScaler()).fit_transform(x))


def _cv_auc(x: np.ndarray, y: np.ndarray, dialogue: np.ndarray, rng: np.random.Generator) -> float:
    """ROC AUC of out-of-fold scores, the copies of one dialogue (a bootstrap draws some twice) in one fold.

    Folds are stratified over the distinct dialogues, so no model is scored on a dialogue it was trained on;
    ``nan`` when a side has fewer than two distinct dialogues.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    distinct, row_of = np.unique(dialogue, return_inverse=True)
    labels = np.zeros(len(distinct), dtype=int)
    labels[row_of] = y
    folds = min(FOLDS, int(labels.sum()), int(len(labels) - labels.sum()))
    if folds < 2:
        return math.nan
    fold_of = np.empty(len(distinct), dtype=int)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=int(rng.integers(2**31)))
    for fold, (_, held) in enumerate(splitter.split(np.zeros((len(distinct), 1)), labels)):
        fold_of[held] = fold
    scores = np.empty(len(y))
    for fold in range(folds):
        held = fold_of[row_of] == fold
        model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(x[~held], y[~held])
        scores[held] = model.decision_function(x[held])
    return float(roc_auc_score(y, scores))


def discriminate(simulated: np.ndarray, human: np.ndarray, seed: int, *, repeats: int = REPEATS,
                 resamples: int = RESAMPLES) -> tuple[float | None, list[float] | None]:
    """(cross-validated ROC AUC of telling ``simulated`` rows from ``human`` rows, its 95% interval).

    The AUC is the mean over ``repeats`` shuffles of the folds. The interval is a percentile bootstrap that
    refits: each of ``resamples`` draws resamples the dialogues of each side with replacement and cross-validates
    again, so it holds the variance of training as well as of scoring (out-of-fold scores share their training
    rows, and a bootstrap of the scores alone was too narrow). ``(None, None)`` with fewer than two dialogues on a
    side (no fold could hold both).
    """
    if min(FOLDS, len(simulated), len(human)) < 2:
        return None, None
    from threadpoolctl import threadpool_limits

    y = np.r_[np.ones(len(simulated), dtype=int), np.zeros(len(human), dtype=int)]
    rng = np.random.default_rng(seed)
    rows = np.arange(len(y))
    # one thread: over hundreds of small fits, more threads only contend (several times slower on a busy machine)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # constant columns (a feature no one varies on) are expected, not news
        x = _standardised(np.vstack([simulated, human]))
        auc = statistics.fmean(_cv_auc(x, y, rows, rng) for _ in range(repeats))
        drawn = []
        for _ in range(resamples):
            picked = np.sort(np.r_[rng.choice(rows[y == 1], int(y.sum())), rng.choice(rows[y == 0], int(len(y) - y.sum()))])
            drawn.append(_cv_auc(x[picked], y[picked], picked, rng))
    low, high = np.nanpercentile(drawn, [2.5, 97.5])
    return round(auc, 4), [round(float(low), 4), round(float(high), 4)]


def distances(simulated: np.ndarray, human: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Per feature: simulated and human means, Wasserstein distance, and that over the human standard deviation."""
    found: dict[str, dict[str, float | None]] = {}
    for j, name in enumerate(FEATURES):
        sim, hum = simulated[:, j][~np.isnan(simulated[:, j])], human[:, j][~np.isnan(human[:, j])]
        if not len(sim) or not len(hum):
            found[name] = {"simulated": _round(sim), "human": _round(hum), "distance": None, "normalised": None}
            continue
        distance = float(stats.wasserstein_distance(sim, hum))
        spread = float(np.std(hum))
        found[name] = {"simulated": _round(sim), "human": _round(hum), "distance": round(distance, 4),
                       "normalised": round(distance / spread if spread > 0 else distance, 4)}
    return found


def _round(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 4) if len(values) else None


def realism_index(auc: float | None, features: Mapping[str, Mapping[str, float | None]]) -> float | None:
    """50 x min(1, 2 (1 - auc)) + 50 x mean exp(-normalised distance): 100 = human, lower = less human."""
    close = [math.exp(-f["normalised"]) for f in features.values() if f["normalised"] is not None]
    if auc is None or not close:
        return None
    return round(50 * min(1.0, 2 * (1 - auc)) + 50 * statistics.fmean(close), 1)


@dataclass(frozen=True)
class Reference:
    """The human side of a comparison, read once for every row."""

    path: Path
    dialogues: list[HumanDialogue]
    language: str

    @classmethod
    def read(cls, path: Path) -> Reference:
        dialogues = read_dialogue_file(path)
        return cls(Path(path), dialogues, reference_language(dialogues))


def compare(episodes: Sequence[StoredEpisode], reference: Reference, rule: RoleBreakRule, seed: int = 0,
            report: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``realism`` object of one ``seeker eval`` row: ``episodes`` (one language) against ``reference``."""
    rounds = rounds_of([e.transcript for e in episodes])
    language = episodes[0].language if episodes else reference.language
    simulated = feature_matrix([e.transcript for e in episodes], language, rounds, rule)
    human = feature_matrix([d.transcript for d in reference.dialogues], language, rounds, rule)
    auc, ci = discriminate(simulated, human, seed)
    features = distances(simulated, human)
    found: dict[str, Any] = {"reference": str(reference.path), "n_reference": len(reference.dialogues), "rounds": rounds,
                             "auc": auc, "auc_ci": ci, "index": realism_index(auc, features), "features": features}
    spread = np.nan_to_num(np.nanstd(human, axis=0)) if len(human) else np.zeros(len(FEATURES))
    found["pairs"] = pairs(episodes, reference, report, language, rounds, rule, spread) if report is not None else []
    return found


def pairs(episodes: Sequence[StoredEpisode], reference: Reference, report: Mapping[str, str], language: str, rounds: int,
          rule: RoleBreakRule, spread: np.ndarray) -> list[dict[str, Any]]:
    """Each episode whose card was built from a reference dialogue, beside that dialogue's first ``rounds`` seeker turns.

    ``distances``: per feature |simulated - human| for this pair; ``distance``: their mean over the group's
    human standard deviation (the ``normalised`` scale), so pairs of one row compare with each other.
    """
    by_key = {d.key: d for d in reference.dialogues}
    found = []
    for episode in episodes:
        item = report.get(episode.labels["card"])
        person = by_key.get(item) if item is not None else None
        if person is None:
            continue
        sim = dialogue_features(episode.transcript, language, rounds, rule)
        hum = dialogue_features(person.transcript, language, rounds, rule)
        if sim is None or hum is None:
            continue
        each = {name: (round(abs(sim[name] - hum[name]), 4) if sim[name] is not None and hum[name] is not None else None)  # type: ignore[operator]
                for name in FEATURES}
        scaled = [d / (spread[j] or 1.0) for j, d in enumerate(each.values()) if d is not None]
        found.append({"episode": episode.labels["key"], "card": episode.labels["card"], "item": item,
                      "distance": round(statistics.fmean(scaled), 4) if scaled else None, "distances": each,
                      "simulated": [t for t, _, _ in seeker_turns(episode.transcript, rounds)],
                      "human": [t for t, _, _ in seeker_turns(person.transcript, rounds)]})
    return found

