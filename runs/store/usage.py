"""Tokens a store's requests used, summed per episode and role: what the report's costs are computed from (docs/cost.md).

Functions over a ``Reader``, like ``safety``; the SQL stays in the store package. Seeker and supporter
requests are the ``turns`` rows (a turn's tokens include its discarded role-break attempts), judge
requests the ``scores`` rows, safety-judge requests the ``safety`` rows. Stores made before usage
was recorded per request read as ``reported`` and not cached; their judge tokens are ``NULL``
(unknown), counted in ``Usage.unknown`` and never read as 0. So are turns whose ``usage`` is ``unknown``
(``records.UNKNOWN_USAGE``: imported ESC-Eval transcripts, whose files carry no token counts; the 0 in their
NOT NULL token columns is in no sum).
"""

from __future__ import annotations

from typing import NamedTuple

from esc_eval.runs.store.reader import Reader
from esc_eval.runs.store.records import UNKNOWN_USAGE


class Usage(NamedTuple):
    """The requests of one episode by one role with one cache state and one usage kind.

    ``role`` is ``seeker``, ``supporter``, ``judge`` or ``safety``; ``seeker`` the episode's seeker
    label (``''`` in stores from before named seekers) and ``supporter`` its supporter, so a price can
    be found for each. ``estimated``: the tokens are ~4 characters a token, not reported or counted.
    ``input``/``output`` sum the known tokens of ``requests`` requests (the fixed opener, 0 tokens, is none;
    cache hits are: they carry the tokens the request cost when it was answered); ``unknown`` counts the answered
    requests without token counts (judge and safety rows of stores made before they were recorded, imported turns). A failed judge call (no
    reply) and an ``excluded`` safety row (no request) have no tokens and are not unknown: nothing was
    answered, so nothing is counted.
    """

    episode_key: str
    role: str
    seeker: str
    supporter: str
    cached: bool
    estimated: bool
    input: int
    output: int
    unknown: int
    requests: int


def _select(reader: Reader, table: str, role: str) -> str:
    """One table's rows grouped per episode, cache state and usage kind (columns an older store lacks take their defaults).

    ``role`` is an SQL expression: the turns' ``t.role`` column, or a role's name quoted.
    """
    have = reader.stored_columns(table)
    cached = "t.cached" if "cached" in have else "0"
    estimated = "t.usage = 'estimated'" if "usage" in have else "0"
    unknown = f"t.usage = '{UNKNOWN_USAGE}'" if "usage" in have else "0"    # its 0 tokens mean nothing
    answered = "t.status NOT IN ('failed', 'excluded')" if "status" in have else "1"
    if "prompt_tokens" in have:
        tokens = (f"COALESCE(SUM(CASE WHEN {unknown} THEN 0 ELSE t.prompt_tokens END), 0), "
                  f"COALESCE(SUM(CASE WHEN {unknown} THEN 0 ELSE t.completion_tokens END), 0), "
                  f"SUM((t.prompt_tokens IS NULL OR t.completion_tokens IS NULL OR {unknown}) AND {answered}), "
                  f"COALESCE(SUM(t.prompt_tokens > 0 AND t.completion_tokens IS NOT NULL AND NOT ({unknown})), 0)")
    else:
        tokens = f"0, 0, SUM({answered}), 0"
    seeker = "e.seeker" if "seeker" in reader.stored_columns("episodes") else "''"
    groups = ", ".join(c for c in ("t.episode_key", role, cached, estimated) if c.startswith("t."))   # a number would be a position
    summed = f"SELECT t.episode_key, {role}, {cached}, {estimated}, {tokens} FROM {table} t GROUP BY {groups}"
    # summed first, then joined: one episode lookup per group instead of per row
    return (f"SELECT a.*, {seeker}, e.supporter FROM ({summed}) a JOIN episodes e ON e.key = a.episode_key")


def usage(reader: Reader) -> list[Usage]:
    """Every episode's tokens per role, cache state and usage kind, in no particular order."""
    parts = [_select(reader, "turns", "t.role"), _select(reader, "scores", "'judge'")]
    if reader._has_table("safety"):
        parts.append(_select(reader, "safety", "'safety'"))
    rows = reader._conn.execute(" UNION ALL ".join(parts)).fetchall()
    return [Usage(key, role, seeker, supporter, bool(cached), bool(estimated), input, output, unknown, requests)
            for key, role, cached, estimated, input, output, unknown, requests, seeker, supporter in rows]
