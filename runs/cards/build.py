"""``esc-eval cards build``: read sources, extract one card per item concurrently, filter, write cards and a report.

Stages and the counts the report keeps (they add up: every item read ends in exactly one):

1. read: items, plus bad records (file and line, skipped);
2. extract: one call per item (one more, carrying the parse error, when the reply is not the
   JSON object asked for); ``rejected`` with the reason otherwise, or ``failed`` when the
   backend gave up (not stored, so ``--resume`` tries those again). Backend retries and backoff
   are the backend's own. With ``[translator]``, a card that passes the quality bar gets the
   other language's text in one more call. Outcomes are stored as they come, so ``--resume``
   redoes only items without one;
3. quality: below ``min_quality`` dropped;
4. personal identifiers: rejected, or scrubbed and kept (``[build] pii``);
5. near-duplicates: a card too similar to an earlier kept card dropped;
6. written: the cards, numbered in source order.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from esc_eval.agents.backends import BackendError
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.roles.extraction import (
    QUALITIES,
    BuilderPrompts,
    ReplyError,
    card_text,
    load_prompts,
    parse_reply,
)
from esc_eval.roles.filters import NearDuplicates, personal_identifiers, scrub
from esc_eval.roles.sources import SourceError, SourceItem, read_source
from esc_eval.runs.cards.config import BuildConfig
from esc_eval.runs.execution.pool import BackendPool
from esc_eval.runs.store.cardbuild import CardBuildStore, ItemOutcome

ESC_CATEGORY = {"family_life": "家庭生活", "work_study": "工作学习", "society_other": "社会与其他"}
ESC_LANGUAGE = {"en": "english", "zh": "chinese"}
OUTPUT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")


@dataclass
class BuildReport:
    """``build-report.json``: counts per stage, tokens spent, and every item that did not become a card, with why."""

    counts: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "completion": 0, "calls": 0})
    rejected: list[dict[str, str]] = field(default_factory=list)
    cards: list[dict[str, Any]] = field(default_factory=list)
    """Written card id -> source item key (and scrubbed identifier kinds)."""

    def drop(self, stage: str, where: str, reason: str) -> None:
        self.counts[stage] = self.counts.get(stage, 0) + 1
        self.rejected.append({"stage": stage, "item": where, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "tokens": self.tokens, "rejected": self.rejected, "cards": self.cards}


async def build_cards(config: BuildConfig, sources: Sequence[tuple[Path, str | None]], out: Path, *,
                      store_path: Path | None = None, resume: bool = False, min_quality: str | None = None,
                      pool: BackendPool | None = None) -> BuildReport:
    """Build cards from ``sources`` (path, shape or None to detect) into ``out`` and ``out``'s ``build-report.json``.

    Raises:
        SourceError, PromptError, StoreError, ConfigError: bad input, before any model call.
    """
    prompts = load_prompts(config.build.prompts)
    report = BuildReport()
    items: list[SourceItem] = []
    for path, shape in sources:
        batch = read_source(path, shape)
        items += batch.items
        for problem in batch.problems:
            report.drop("bad_records", problem.where, problem.reason)
    repeated = [key for key, n in Counter(item.key for item in items).items() if n > 1]
    if repeated:
        raise SourceError(f"item key {repeated[0]!r} occurs twice (two files with the same name, or a repeated id)")
    report.counts["items"] = len(items)
    pool = pool or BackendPool()
    with CardBuildStore.open(store_path, config.fingerprint(prompts.text), resume=resume) as store:
        try:
            failed = await _extract_all(config, prompts, items, store, pool)
        finally:
            await pool.aclose()
        outcomes = {**store.outcomes(), **failed}
    cards = _filter(config, items, outcomes, min_quality or config.build.min_quality, report)
    for outcome in (outcomes[i.key] for i in items):
        report.tokens["prompt"] += outcome.prompt_tokens
        report.tokens["completion"] += outcome.completion_tokens
        report.tokens["calls"] += outcome.calls
    report.counts["written"] = len(cards)
    if cards:
        _write_cards(out, cards)
    (out.parent / "build-report.json").write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    return report


async def _extract_all(config: BuildConfig, prompts: BuilderPrompts, items: list[SourceItem],
                       store: CardBuildStore, pool: BackendPool) -> dict[str, ItemOutcome]:
    """Extract every item the store has no outcome for; returns the failed ones (the backend gave up), not stored."""
    done = store.outcomes()
    failed: dict[str, ItemOutcome] = {}
    todo = [item for item in items if item.key not in done]
    if done:
        print(f"esc-eval: cards build: resuming, {len(items) - len(todo)} of {len(items)} items already extracted", file=sys.stderr)
    extractor = pool.get("extractor", config.extractor)
    translator = pool.get("translator", config.translator) if config.translator else None
    limit = asyncio.Semaphore(config.build.concurrency)
    finished = 0
    step = max(1, len(todo) // 10)

    async def one(item: SourceItem) -> None:
        nonlocal finished
        async with limit:
            outcome = await _extract(config, prompts, item, extractor, translator)
        if outcome.status == "failed":  # not stored: --resume tries it again
            failed[item.key] = outcome
        else:
            store.record(outcome)
        finished += 1
        if finished % step == 0 or finished == len(todo):
            print(f"esc-eval: cards build: {finished}/{len(todo)} items extracted", file=sys.stderr)

    await asyncio.gather(*(one(item) for item in todo))
    return failed


async def _extract(config: BuildConfig, prompts: BuilderPrompts, item: SourceItem, extractor: Any,
                   translator: Any) -> ItemOutcome:
    """One item's extraction (and translation): a card, or a rejection with the reason; never raises for a model's fault."""
    language = prompts.languages[config.build.language]
    messages: list[ChatMessage] = [
        {"role": "system", "content": prompts.system.format(language_name=language.name, not_mentioned=language.not_mentioned)},
        {"role": "user", "content": prompts.user.format(text=item.text)},
    ]
    params = SamplingParams(max_tokens=config.extractor.max_tokens, temperature=config.extractor.temperature,
                            top_p=config.extractor.top_p)
    spent = [0, 0, 0]

    async def ask(backend: Any, chat: list[ChatMessage], sampling: SamplingParams) -> str:
        completion = await backend.complete(chat, sampling)
        spent[0] += completion.prompt_tokens
        spent[1] += completion.completion_tokens
        spent[2] += 1
        return completion.text

    def outcome(card: dict[str, Any] | None, reason: str | None, status: str = "rejected") -> ItemOutcome:
        return ItemOutcome(item.key, "extracted" if card else status, card, reason, *spent)

    try:
        reply = await ask(extractor, messages, params)
        try:
            extracted = parse_reply(reply)
        except ReplyError as first:
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": prompts.retry.format(error=first)}]
            reply = await ask(extractor, messages, params)
            try:
                extracted = parse_reply(reply)
            except ReplyError as second:
                return outcome(None, f"reply not usable after one retry: {second}; the reply began {reply[:80]!r}")
        card: dict[str, Any] = {"base": card_text(extracted, language), "category": extracted.category,
                                "quality": extracted.quality, "source": item.dataset}
        min_quality = config.build.min_quality
        if translator is not None and QUALITIES.index(extracted.quality) >= QUALITIES.index(min_quality):
            other = next(lang for lang in prompts.languages if lang != config.build.language)
            target = prompts.languages[other]
            chat: list[ChatMessage] = [
                {"role": "system", "content": prompts.translate_system.format(language_name=target.name, labels=", ".join(target.labels))},
                {"role": "user", "content": prompts.translate_user.format(card=card["base"])},
            ]
            assert config.translator is not None
            card["translation"] = (await ask(translator, chat, SamplingParams(
                max_tokens=config.translator.max_tokens, temperature=config.translator.temperature, top_p=config.translator.top_p))).strip()
        return outcome(card, None)
    except BackendError as exc:
        return outcome(None, f"backend failed: {exc}", "failed")


def _filter(config: BuildConfig, items: list[SourceItem], outcomes: dict[str, ItemOutcome], min_quality: str,
            report: BuildReport) -> list[dict[str, Any]]:
    """Stages 3-5 in source order (so 'the first' of duplicates is the first read); the kept cards."""
    floor = QUALITIES.index(min_quality)
    duplicates = NearDuplicates(config.build.near_duplicate_threshold)
    kept: list[dict[str, Any]] = []
    for counter in ("extracted", "extraction_rejected", "extraction_failed", "below_quality", "pii_rejected", "pii_scrubbed", "near_duplicates"):
        report.counts.setdefault(counter, 0)
    for item in items:
        outcome = outcomes[item.key]
        if outcome.card is None:
            report.drop(f"extraction_{outcome.status}", item.where, outcome.reason or "")
            continue
        report.counts["extracted"] += 1
        card = dict(outcome.card)
        if QUALITIES.index(card["quality"]) < floor:
            report.drop("below_quality", item.where, f"quality {card['quality']} is below {min_quality}")
            continue
        found = sorted({kind for text in (card["base"], card.get("translation", "")) for kind in personal_identifiers(text)})
        if found and config.build.pii == "reject":
            report.drop("pii_rejected", item.where, f"personal identifiers: {', '.join(found)}")
            continue
        if found:
            report.counts["pii_scrubbed"] += 1
            card = {**card, "base": scrub(card["base"]), **({"translation": scrub(card["translation"])} if "translation" in card else {})}
        earlier = duplicates.seen(item.key, card["base"])
        if earlier is not None:
            report.drop("near_duplicates", item.where, f"near-duplicate of {earlier}")
            continue
        report.cards.append({"id": len(kept), "item": item.key, **({"scrubbed": found} if found else {})})
        kept.append({**card, "id": len(kept), "language": config.build.language})
    return kept


def _write_cards(out: Path, cards: list[dict[str, Any]]) -> None:
    """ESC-Eval's card JSON for ``.json``; ours (``profile``, ``category``, ``annotations``) for JSONL and YAML."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        records = [{"base": c["base"], "res": ESC_CATEGORY[c["category"]], "source": c["source"],
                    **({"base_biaozhu": c["translation"]} if "translation" in c else {}),
                    "language": ESC_LANGUAGE[c["language"]], "id": c["id"]} for c in cards]
        text = json.dumps(records, ensure_ascii=False, indent=1)
    else:
        records = [{"id": str(c["id"]), "language": c["language"], "category": c["category"], "source": c["source"],
                    "profile": c["base"], "annotations": {"quality": c["quality"],
                                                          **({"translation": c["translation"]} if "translation" in c else {})}}
                   for c in cards]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) if suffix == ".jsonl" else \
            yaml.safe_dump(records, allow_unicode=True, sort_keys=False)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)

