"""``esc-eval judge``: score existing transcripts (ESC-Eval result files or JSONL exports).

Writes ESC-Eval's score format keyed like the input (``{"0": {"fluency": 3, ...}}``,
-1 where the answer held no label). A dimension whose request finally failed is left
out of the file and counted in the exit code -- a failure is never written as a score.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from roles.jsonl import read_jsonl
from runs.config import Config
from runs.exchange import parse_lines, write_json

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
                if record.get("status", "done") != "done":
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


async def judge_transcripts(config: Config, path: Path, *, language: str | None, out: Path | None) -> tuple[dict[str, dict[str, int]], int, str]:
    """Score every transcript in ``path``; returns the score table, the number of failed judgements and the language."""
    from agents.judge import FINAL, Score  # autogen-core: imported here, not when the CLI starts
    from runs.runner import BackendPool, load_judge_profile, make_scorer

    assert config.judge is not None
    transcripts = read_transcripts(path)
    language = language or detect_language(path, transcripts)
    profile = load_judge_profile(config, {language})
    pool = BackendPool()
    backend = pool.get("judge", config.judge)
    scores: dict[tuple[str, str], Score] = {}
    scorer = make_scorer(config, profile, backend, [lambda s: scores.__setitem__((s.episode_key, s.dimension), s) if s.round == FINAL else None])
    try:
        for key, lines in transcripts.items():
            scorer.schedule(key, language, lines)
        await scorer.drain()
    finally:
        await pool.aclose()
    table = {
        key: {dim: scores[key, dim].label for dim in profile.keys if not scores[key, dim].failed}  # type: ignore[misc]
        for key in transcripts
    }
    failed = sum(1 for s in scores.values() if s.failed)
    if out is not None:
        write_json(out, table)
    return table, failed, language
