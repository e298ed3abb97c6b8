"""``esc-eval judge``: score existing transcripts (ESC-Eval result files or JSONL exports).

Writes ESC-Eval's score format keyed like the input (``{"0": {"fluency": 3, ...}}``,
-1 where the answer held no label). A dimension whose request finally failed is left
out of the file and counted in the exit code -- a failure is never written as a score.
With a store, every judgement is kept as a run keeps it: model, raw reply, failure and error.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esc_eval.roles.jsonl import read_jsonl
from esc_eval.runs.config import Config
from esc_eval.runs.formats.archive import STORE_LINE
from esc_eval.runs.formats.exchange import parse_lines, write_json
from esc_eval.runs.formats.importing import ImportSummary, esc_eval_episodes, file_names, import_new
from esc_eval.runs.store import FINAL_ROUND, Store

if TYPE_CHECKING:
    from esc_eval.agents.judge.agent import Score

_CJK = re.compile(r"[\u4e00-\u9fff]")


class TranscriptError(ValueError):
    """A transcript file cannot be read; the message names the file and entry."""


def read_transcripts(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Key -> ``(role, text)`` lines, from an ESC-Eval result JSON or an esc-eval JSONL export."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(f"{path}: cannot read: {exc}") from None
    if path.suffix == ".jsonl":
        out = {}
        for number, record in read_jsonl(text, str(path), TranscriptError):
            try:
                if STORE_LINE in record or record.get("status", "done") != "done":  # the store line of a format-3 export
                    continue
                out[str(record["key"])] = [(t["role"], t["text"]) for t in record["turns"]]
            except (KeyError, TypeError) as exc:
                raise TranscriptError(f"{path}: line {number}: not an esc-eval episode record ({exc})") from None
        return out
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise TranscriptError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise TranscriptError(f"{path}: expected a JSON object of transcripts keyed by card index")
    out = {}
    for key, lines in data.items():
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise TranscriptError(f"{path}: entry {key!r}: expected a list of lines")
        try:
            out[key] = parse_lines(lines)
        except ValueError as exc:
            raise TranscriptError(f"{path}: entry {key!r}: {exc}") from None
    return out


def detect_language(path: Path, transcripts: dict[str, list[tuple[str, str]]]) -> str:
    """From a ``_en``/``_zh`` file-name suffix, else from the share of CJK characters."""
    stem = path.stem.rsplit("_", 1)
    if len(stem) == 2 and stem[1] in ("en", "zh"):
        return stem[1]
    sample = "".join(text for lines in list(transcripts.values())[:20] for _, text in lines)
    return "zh" if sample and len(_CJK.findall(sample)) > 0.2 * len(sample) else "en"


@dataclass(frozen=True)
class Judged:
    """What ``judge_transcripts`` found: every judgement of every transcript, in the profile's dimension order."""

    language: str
    scores: dict[str, list[Score]]
    """Transcript key -> its scores (the whole dialogue's, then any per-round ones)."""

    @property
    def table(self) -> dict[str, dict[str, int]]:
        """ESC-Eval's score format: key -> dimension -> label (the first of ``[judge] samples``); failed judgements are left out."""
        return {key: {s.dimension: s.label for s in scores if s.round == FINAL_ROUND and s.sample == 0 and s.label is not None}
                for key, scores in self.scores.items()}

    @property
    def failed(self) -> int:
        return sum(s.failed for scores in self.scores.values() for s in scores if s.round == FINAL_ROUND)


async def judge_transcripts(config: Config, path: Path, *, language: str | None, out: Path | None) -> Judged:
    """Score every transcript in ``path``; writes ESC-Eval's score file to ``out`` when given."""
    from esc_eval.runs.execution.plan import load_judge_profile  # autogen-core: imported here, not when the CLI starts
    from esc_eval.runs.execution.pool import BackendPool
    from esc_eval.runs.execution.runner import make_scorer

    assert config.judge is not None
    transcripts = read_transcripts(path)
    language = language or detect_language(path, transcripts)
    profile = load_judge_profile(config, {language})
    pool = BackendPool(cache=(config.run.cache, config.run.cache_mode))   # --cache: a judgement asked before is not sent
    backend = pool.get("judge", config.judge)
    order = {dim: index for index, dim in enumerate(profile.keys)}
    scores: dict[str, list[Score]] = {key: [] for key in transcripts}
    scorer = make_scorer(config, profile, backend, [lambda s: scores[s.episode_key].append(s)])
    try:
        for key, lines in transcripts.items():
            scorer.schedule(key, language, lines)
        await scorer.drain()
    finally:
        await pool.aclose()
    for found in scores.values():  # in the order they were asked, not answered
        found.sort(key=lambda s: (s.round != FINAL_ROUND, s.round, order[s.dimension], s.sample))
    judged = Judged(language, scores)
    if out is not None:
        write_json(out, judged.table)
    return judged


def store_judged(store: Store, path: Path, judged: Judged, *, supporter: str | None = None) -> ImportSummary:
    """Import the judged ESC-Eval result file with every judgement as judged: model, raw reply, failure and error.

    The supporter is ``supporter`` or the file name's (``MODEL_LANG.json``); episodes the store has with the
    same transcript are skipped, with another one refused (``ResultFileError`` naming the key).
    """
    names = file_names(path, supporter, judged.language)
    at = time.time()
    episodes = []
    for episode in esc_eval_episodes(path, None, names.supporter, names.language, names.persona):
        rows = episode.rows()
        judgements = judged.scores.get(rows.episode["card_id"], [])  # card_id is the card index, the file's key
        episodes.append(replace(rows, scores=tuple(
            {"dimension": s.dimension, "round": s.round, "label": s.label, "raw": s.raw, "model": s.model, "latency": s.latency,
             "status": "failed" if s.failed else "ok", "error": s.error, "at": at, "sample": s.sample,
             "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens, "usage": s.usage, "cached": int(s.cached)}
            for s in judgements)))
    new, skipped = import_new(store, episodes, path, {"turns": ("idx", "role", "text")})
    return ImportSummary(path, None, names.supporter, names.language, len(new), sum(len(e.scores) for e in new), skipped, names.persona)
