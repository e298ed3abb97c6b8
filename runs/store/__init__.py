"""The run store: one SQLite file (WAL) per run holding config, episodes, turns, scores, events and human labels.

Public API (everything SQL stays inside this package):

* ``Store``: open / create a store (``with Store.open(path, readonly=True) as store:``), the
  run's batched writer (``start_writer``, ``add_turn``, ``add_score``, ...) and typed reads
  (``episodes``, ``turns``, ``scores``, ``final_scores``, ``annotations``, ...) (``writer``, ``reader``);
* records (``records``): ``PlannedEpisode``, ``ImportedEpisode``, ``EpisodeRows`` in (``ImportedRows``: what an import wrote);
  ``EpisodeRecord``, ``TurnRecord``, ``ScoreRecord``, ``FinalScore``, ``AnnotationRecord``,
  ``EventRecord``, ``RunRecord``, ``Unscored`` out;
  ``Tokens`` (a judge request's usage); ``final_labels`` (the judge label ESC-Eval compares); ``FINAL_ROUND``;
  ``episode_key`` (every episode's key); ``RunRecorder`` (``recorder``: what a ``Runner`` records through);
* the schema (``schema``): ``SCHEMA_VERSION``, ``columns``, ``StoreError``; ``schema.tables``,
  ``schema.table_columns``, ``schema.episode_tables``, ``schema.PRIVATE_META`` for generic archives;
* the response cache's own file (``cache``, imported where used): ``ResponseCache``, ``request_key``, ``CacheError``.
"""

from esc_eval.runs.store.live import LiveReader, StoreBusy
from esc_eval.runs.store.recorder import RunRecorder
from esc_eval.runs.store.records import (
    FINAL_ROUND,
    NO_TOKENS,
    AnnotationRecord,
    EpisodeRecord,
    EpisodeRows,
    EventRecord,
    FinalScore,
    ImportedEpisode,
    ImportedRows,
    PlannedEpisode,
    RunRecord,
    ScoreRecord,
    Tokens,
    TurnRecord,
    Unscored,
    episode_key,
    final_labels,
)
from esc_eval.runs.store.schema import SCHEMA_VERSION, StoreError, columns
from esc_eval.runs.store.writer import HEARTBEAT_SECONDS, Store, StoreWriteError

__all__ = [
    "FINAL_ROUND", "HEARTBEAT_SECONDS", "NO_TOKENS", "Tokens",
    "SCHEMA_VERSION", "AnnotationRecord", "EpisodeRecord", "EpisodeRows", "EventRecord", "FinalScore",
    "ImportedEpisode", "ImportedRows", "LiveReader", "PlannedEpisode", "RunRecord", "ScoreRecord", "Store", "StoreBusy", "StoreError",
    "StoreWriteError", "RunRecorder", "TurnRecord", "Unscored", "columns",
    "episode_key", "final_labels",
]
