"""The judge: scores ended episodes on every dimension of a prompt profile, alongside the simulation.

``Scorer`` is the work: for one transcript it sends one request per dimension (``samples``
requests with different seeds when judge noise is measured; and, with
``score_every_round``, per round prefix) concurrently, under its own limit, and hands each
``Score`` to its sinks as it arrives. ``JudgeAgent`` is the runtime observer: on
``EpisodeEnded`` it schedules the scoring and returns at once, so the simulation never
waits for the judge. In a run the sink is ``score_publisher``: each score goes out on the
``scores`` topic, where the store observes it, as turns and episode ends do. A failed request is retried by the backend, then recorded as
``failed`` -- never as a score; an answer without a label is stored as -1 with its text.
Each ``Score`` carries its request's tokens, their ``usage`` kind and ``cached`` (unknown, ``None``, when the request failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from autogen_core import AgentRuntime, MessageContext, RoutedAgent, TopicId, message_handler

from esc_eval.agents.backends.base import BackendError, ChatBackend
from esc_eval.agents.judge.profiles import JudgeProfile
from esc_eval.agents.messages import EPISODES_SOURCE, FINAL, SCORES_TOPIC, EpisodeEnded, SamplingParams, Score

log = logging.getLogger(__name__)

ScoreSink = Callable[[Score], Awaitable[None] | None]
"""Called with each ``Score`` as it arrives; an async sink (``score_publisher``) is awaited."""


def sample_params(params: SamplingParams, sample: int, samples: int) -> SamplingParams:
    """The params of judge sample ``sample`` of ``samples``: seed ``params.seed + sample`` (0 + sample when unset).

    One greedy (``temperature`` 0) or seeded sample is sent as is; a sampled one gets seed 0 + 0, so every judge
    request is reproducible and can be answered from the response cache (``esc_eval.runs.execution.caching``).
    """
    if samples == 1 and params.reproducible:
        return params
    return replace(params, seed=(params.seed or 0) + sample)


class Scorer:
    """Scores transcripts with ``profile`` through ``backend``.

    Args:
        models: dimension key -> model name (``{lang}`` is replaced by the language, so
            ESC-RANK's adapters read ``fluency = "fluency_{lang}"``); others use ``default_model``.
        limit: judge requests in flight at most, separate from the simulation's limits.
        score_every_round: also score each round's prefix of the dialogue (a score trajectory).
        samples: labels per (episode, dimension, round); sample ``j`` is requested with seed
            ``params.seed + j`` (0 + j when unset), so the k labels measure the judge's own noise.
            With 1 a greedy or seeded request is sent as ``params`` says (``sample_params``).
    """

    def __init__(
        self,
        profile: JudgeProfile,
        backend: ChatBackend,
        *,
        default_model: str | None = None,
        models: Mapping[str, str] | None = None,
        params: SamplingParams = SamplingParams(max_tokens=64, temperature=0.0),
        limit: int = 16,
        score_every_round: bool = False,
        samples: int = 1,
        sinks: Sequence[ScoreSink] = (),
    ):
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        unknown = set(models or {}) - set(profile.keys)
        if unknown:
            raise ValueError(f"[judge.models] names unknown dimensions {sorted(unknown)} (profile {profile.name} has {', '.join(profile.keys)})")
        self.profile, self.backend = profile, backend
        self.default_model, self.models = default_model, dict(models or {})
        self.params, self.score_every_round = params, score_every_round
        self.samples = samples
        self.sinks = list(sinks)
        self.limit = limit
        self._jobs: deque[_Job] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._scheduled: set[asyncio.Future[list[Score]]] = set()
        self.pending = 0
        """Judge requests queued or in flight."""

    def model_for(self, dimension: str, language: str) -> str | None:
        name = self.models.get(dimension, self.default_model)
        return name.replace("{lang}", language) if name else None

    def schedule(self, key: str, language: str, transcript: Sequence[tuple[str, str]], supporter: str = "",
                 dimensions: Sequence[str] | None = None) -> asyncio.Future[list[Score]]:
        """Start scoring in the background (only ``dimensions``, when given); ``drain()`` waits for everything scheduled."""
        future = self._enqueue(key, language, transcript, supporter, dimensions)
        self._scheduled.add(future)
        future.add_done_callback(self._scheduled.discard)
        return future

    async def drain(self) -> None:
        while self._scheduled:
            await asyncio.gather(*list(self._scheduled))

    def cancel(self) -> None:
        """Drop what is queued and cancel what is in flight (a stopped run): the store lacks those labels, ``--resume`` asks them."""
        self._jobs.clear()
        for future in list(self._scheduled):
            future.cancel()
        for worker in list(self._workers):
            worker.cancel()

    async def score(self, key: str, language: str, transcript: Sequence[tuple[str, str]], supporter: str = "") -> list[Score]:
        """Every dimension (and round prefix) of one transcript, concurrently under the scorer's limit."""
        return await self._enqueue(key, language, transcript, supporter, None)

    def _enqueue(self, key: str, language: str, transcript: Sequence[tuple[str, str]], supporter: str,
                 dimensions: Sequence[str] | None) -> asyncio.Future[list[Score]]:
        """Queue one transcript's requests; the future gets their scores in order.

        Requests wait as small tuples, not as tasks or futures each: when a thousand
        episodes end at once, the backlog is a deque served by at most ``limit`` workers.
        """
        keys = self.profile.keys if dimensions is None else dimensions
        prefixes = [(FINAL, transcript)]
        if self.score_every_round:
            prefixes += [(round_, transcript[:end]) for round_, end in scored_rounds(transcript)]
        jobs = [(dim, round_, lines, sample) for round_, lines in prefixes for dim in keys for sample in range(self.samples)]
        batch = _Batch(key, language, supporter, len(jobs), asyncio.get_running_loop().create_future())
        if not jobs:  # nothing asked for: done now, or drain() would wait forever
            batch.future.set_result([])
        for index, (dim, round_, lines, sample) in enumerate(jobs):
            self._jobs.append((batch, index, dim, round_, lines, sample))
        self.pending += len(jobs)
        for _ in range(min(len(jobs), self.limit - len(self._workers))):
            self._workers.add(asyncio.create_task(self._work(), name="judge-worker"))
        return batch.future

    async def _work(self) -> None:
        try:
            await self._serve()
        finally:  # here, not in a done callback: a worker that is gone must not count when the next jobs arrive
            self._workers.discard(asyncio.current_task())

    async def _serve(self) -> None:
        while self._jobs:
            batch, index, dim, round_, lines, sample = self._jobs.popleft()
            try:
                if batch.future.cancelled():  # its caller was cancelled
                    continue
                try:
                    score = await self._one(batch.key, dim, round_, batch.language, lines, batch.supporter, sample)
                except asyncio.CancelledError:
                    batch.future.cancel()
                    raise
                except Exception as exc:  # a bug (a profile without this language, say) reaches score()'s caller
                    if not batch.future.done():
                        batch.future.set_exception(exc)
                else:
                    batch.scores[index] = score
                    batch.left -= 1
                    if not batch.left and not batch.future.done():
                        batch.future.set_result(batch.scores)  # type: ignore[arg-type]  # every slot is filled
            finally:
                self.pending -= 1

    async def _one(self, key: str, dimension: str, round_: int, language: str, transcript: Sequence[tuple[str, str]],
                   supporter: str, sample: int) -> Score:
        model = self.model_for(dimension, language)
        params = sample_params(self.params, sample, self.samples)
        start = time.perf_counter()
        try:
            completion = await self.backend.complete(self.profile.messages(dimension, language, transcript), params, model=model)
        except BackendError as exc:
            score = Score(key, dimension, round_, None, None, model or "", time.perf_counter() - start, str(exc), supporter, sample)
        else:
            label = self.profile.parse(completion.text)
            score = Score(key, dimension, round_, label, completion.text, completion.model or model or "", completion.latency, None,
                          supporter, sample, completion.prompt_tokens, completion.completion_tokens, completion.usage, completion.cached)
        for sink in self.sinks:
            delivered = sink(score)
            if delivered is not None:
                await delivered
        return score


class _Batch:
    """One transcript's judge requests: where their scores go and who waits for them."""

    __slots__ = ("key", "language", "supporter", "scores", "left", "future")

    def __init__(self, key: str, language: str, supporter: str, size: int, future: asyncio.Future[list[Score]]):
        self.key, self.language, self.supporter = key, language, supporter
        self.scores: list[Score | None] = [None] * size
        self.left = size
        self.future = future


_Job = tuple[_Batch, int, str, int, Sequence[tuple[str, str]], int]
"""``(batch, index in its scores, dimension, round, transcript, sample)`` of one judge request."""


def _round_ends(transcript: Sequence[tuple[str, str]]) -> list[int]:
    """Transcript lengths at which a round closes: just after each supporter reply to a seeker."""
    return [i + 1 for i, (role, _) in enumerate(transcript) if role == "supporter" and i > 0 and transcript[i - 1][0] == "seeker"]


def scored_rounds(transcript: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """``(round, transcript length)`` of each prefix ``score_every_round`` scores: every round closed before the end
    (the whole transcript is the final score). Whoever counts the judge's requests (the Ray sink, the live spend,
    ``--dry-run``) counts them from this, so they agree with what the judge sends."""
    return [(round_, end) for round_, end in enumerate(_round_ends(transcript), 1) if end < len(transcript)]


class JudgeAgent(RoutedAgent):
    """Subscribes to episode ends; failed episodes are not dialogues and are never scored."""

    def __init__(self, scorer: Scorer):
        super().__init__("scores ended episodes on every judge dimension")
        self.scorer = scorer

    @message_handler
    async def on_end(self, message: EpisodeEnded, ctx: MessageContext) -> None:
        if message.outcome != "failed":
            self.scorer.schedule(message.episode_key, message.language, message.transcript, message.supporter)


def score_publisher(runtime: AgentRuntime) -> ScoreSink:
    """A sink publishing each ``Score`` on the ``scores`` topic of ``runtime`` (the store and any monitor observe it)."""
    topic = TopicId(SCORES_TOPIC, EPISODES_SOURCE)

    async def publish(score: Score) -> None:
        await runtime.publish_message(score, topic)

    return publish


__all__ = ["FINAL", "JudgeAgent", "Score", "ScoreSink", "Scorer", "score_publisher"]
