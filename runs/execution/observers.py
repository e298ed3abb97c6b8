"""Runtime subscribers that record what the environment and the judge publish: the store and the live counters."""

from __future__ import annotations

import re

from autogen_core import MessageContext, RoutedAgent, message_handler

from esc_eval.agents.judge.safety import EXCLUDED
from esc_eval.agents.messages import EpisodeEnded, SafetyJudgement, Score, TurnTaken
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.store import FINAL_ROUND, Store, Tokens
from esc_eval.runs.store import safety as safety_records
from esc_eval.runs.store.recorder import RunRecorder

PLUGIN_FAULT = re.compile(r"^(persona|termination detector|turn policy) \S+ error: |^\S+ agent error: ")
"""Failure reasons of a plugin that raised (``Environment``): persona, detector, turn policy, agent or backend."""


class StoreObserver(RoutedAgent):
    """Queues every turn, episode end and score for the store's writer; never touches disk itself."""

    def __init__(self, store: RunRecorder, progress: RunProgress):
        super().__init__("records turns and outcomes in the run store")
        self.store, self.progress = store, progress

    @message_handler
    async def on_turn(self, message: TurnTaken, ctx: MessageContext) -> None:
        self.store.add_turn(message)
        self.progress.turn(message)

    @message_handler
    async def on_end(self, message: EpisodeEnded, ctx: MessageContext) -> None:
        self.store.end_episode(message.episode_key, message.outcome, message.reason, message.at)
        if message.outcome == "failed" and PLUGIN_FAULT.search(message.reason):  # which plugin raised, findable without reading episodes
            self.store.add_event("plugin_error", message.reason, episode_key=message.episode_key)
        self.progress.ended(message)

    @message_handler
    async def on_score(self, message: Score, ctx: MessageContext) -> None:
        self.store.add_score(
            message.episode_key, message.dimension, message.label, message.raw, message.model, message.latency,
            status="failed" if message.failed else "ok", error=message.error, round=message.round, sample=message.sample,
            tokens=Tokens.of(message),
        )
        if self.progress.spend is not None:
            self.progress.spend.judged(message.episode_key, Tokens.of(message))
        if message.round == FINAL_ROUND:
            self.progress.score(message.supporter, message.dimension, message.label, message.episode_key)

    @message_handler
    async def on_safety(self, message: SafetyJudgement, ctx: MessageContext) -> None:
        assert isinstance(self.store, Store), "a safety judge runs with the local executor only"
        safety_records.add(self.store, message)
        if self.progress.spend is not None:
            self.progress.spend.safety(message.episode_key, Tokens.of(message), excluded=message.kind == EXCLUDED)
