"""The Scorer: per-dimension routing, label parsing, failures, round trajectories."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from autogen_core import MessageContext, RoutedAgent, TopicId, TypeSubscription, message_handler

from esc_eval.agents.backends.base import GaveUp, ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.judge.agent import FINAL, JudgeAgent, Score, Scorer, score_publisher
from esc_eval.agents.judge.profiles import ProfileError, load_profile
from esc_eval.agents.messages import EPISODES_SOURCE, EPISODES_TOPIC, SCORES_TOPIC, ChatMessage, EpisodeEnded, SamplingParams
from esc_eval.environments.runtime import make_runtime

TRANSCRIPT = [("supporter", "Hi, what's on your mind?"), ("seeker", "Work is crushing me."), ("supporter", "That sounds heavy."),
              ("seeker", "I can't sleep."), ("supporter", "Let's look at what keeps you up.")]


async def test_every_dimension_is_scored_and_routed_by_model_name() -> None:
    def answer(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        return {"fluency_en": "Score: 4", "empathic_en": "Score: 2"}.get(model, "Score: 3")

    backend = ScriptedBackend(answer, model="base")
    seen: list[Score] = []
    scorer = Scorer(load_profile("default"), backend, default_model="base",
                    models={"fluency": "fluency_{lang}", "empathic": "empathic_{lang}"}, sinks=[seen.append])
    scores = await scorer.score("k", "en", TRANSCRIPT, "sup")
    assert {s.dimension: s.label for s in scores} == {
        "fluency": 4, "diversity": 3, "empathic": 2, "suggestion": 3, "tech": 3, "human": 3, "overall": 3,
    }
    assert {s.dimension: s.model for s in scores}["fluency"] == "fluency_en"
    assert sorted(m for _, _, m in backend.requests) == sorted(["fluency_en", "empathic_en"] + ["base"] * 5)
    assert all(p.temperature == 0.0 for _, p, _ in backend.requests)  # greedy
    assert seen == scores and all(s.round == FINAL and s.supporter == "sup" for s in scores)


async def test_unparseable_answer_is_minus_one_with_raw_text() -> None:
    scorer = Scorer(load_profile("default"), ScriptedBackend(lambda *a: "I would rather not say."))
    scores = await scorer.score("k", "en", TRANSCRIPT)
    assert all(s.label == -1 and s.raw == "I would rather not say." and not s.failed for s in scores)


async def test_failed_request_is_recorded_as_failed_not_scored() -> None:
    def flaky(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        if "fluency" in messages[-1]["content"].lower().split("rate this conversation on")[-1]:
            raise GaveUp("judge", 3, ServerError("HTTP 500"))
        return "Score: 1"

    scores = await Scorer(load_profile("default"), ScriptedBackend(flaky)).score("k", "en", TRANSCRIPT)
    failed = [s for s in scores if s.failed]
    assert len(failed) == 1 and failed[0].dimension == "fluency" and failed[0].label is None and "500" in (failed[0].error or "")
    assert all(s.label == 1 for s in scores if not s.failed)


async def test_score_every_round_gives_a_trajectory() -> None:
    backend = ScriptedBackend(lambda *a: "Score: 2")
    scorer = Scorer(load_profile("default"), backend, score_every_round=True)
    scores = await scorer.score("k", "en", TRANSCRIPT)
    rounds = sorted({s.round for s in scores})
    assert rounds == [FINAL, 1]  # round 1 closes at line 3; round 2 is the whole dialogue (FINAL)
    round_one_prompts = [m[-1]["content"] for m, _, _ in backend.requests
                         if "That sounds heavy." in m[-1]["content"] and "I can't sleep." not in m[-1]["content"]]
    assert len(round_one_prompts) == 7


async def test_schedule_and_drain_with_a_limit() -> None:
    active = peak = 0

    class Slow(ScriptedBackend):
        async def complete(self, messages, params, *, model=None):  # type: ignore[no-untyped-def]
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                return await super().complete(messages, params, model=model)
            finally:
                active -= 1

    scorer = Scorer(load_profile("default"), Slow(lambda *a: "Score: 3", delay=0.01), limit=3)
    for i in range(4):
        scorer.schedule(f"k{i}", "en", TRANSCRIPT)
    assert scorer.pending == 4 * 7 and active == 0  # queued, none sent yet: scheduling never blocks the caller
    await scorer.drain()
    assert peak == 3 and scorer.pending == 0


async def test_a_backlog_waits_as_jobs_served_by_at_most_limit_workers() -> None:
    scorer = Scorer(load_profile("default"), ScriptedBackend(lambda *a: "Score: 3", delay=0.01), limit=4)
    for i in range(50):
        scorer.schedule(f"k{i}", "en", TRANSCRIPT)
    await asyncio.sleep(0.005)
    workers = [t for t in asyncio.all_tasks() if t.get_name() == "judge-worker"]
    assert len(workers) == 4 and scorer.pending == 50 * 7  # 350 requests queued or in flight, 4 tasks serving them
    await scorer.drain()
    assert scorer.pending == 0 and not [t for t in asyncio.all_tasks() if t.get_name() == "judge-worker"]


async def test_scores_come_back_in_job_order_and_a_cancelled_caller_frees_its_queued_jobs() -> None:
    scorer = Scorer(load_profile("default"), ScriptedBackend(lambda *a: "Score: 3", delay=0.01), limit=1, score_every_round=True)
    scores = await scorer.score("k", "en", TRANSCRIPT)
    keys = scorer.profile.keys
    assert [s.dimension for s in scores[:len(keys)]] == list(keys) and {s.round for s in scores[:len(keys)]} == {-1}
    assert [s.round for s in scores[len(keys):]] == sorted(s.round for s in scores[len(keys):])
    waiting = asyncio.ensure_future(scorer.score("gone", "en", TRANSCRIPT))
    await asyncio.sleep(0.015)  # the single worker is on its first or second request
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.03)
    assert scorer.pending == 0 and len(scorer.backend.requests) < 2 * len(scores)


async def test_a_bug_in_one_job_reaches_the_caller_and_the_workers_go_on() -> None:
    scorer = Scorer(load_profile("default"), ScriptedBackend(lambda *a: "Score: 3"), limit=2)
    with pytest.raises(ProfileError, match="'xx'"):
        await scorer.score("bad", "xx", TRANSCRIPT)  # no rubric in language 'xx'
    assert len(await scorer.score("good", "en", TRANSCRIPT)) == 7 and scorer.pending == 0


async def test_samples_score_each_dimension_k_times_with_different_seeds() -> None:
    def by_seed(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        return f"Score: {params.seed % 5}"

    backend = ScriptedBackend(by_seed)
    scorer = Scorer(load_profile("default"), backend, params=SamplingParams(max_tokens=8, temperature=0.7, seed=1), samples=3)
    scores = await scorer.score("k", "en", TRANSCRIPT)
    assert len(scores) == 7 * 3 and len(backend.requests) == 21
    fluency = [s for s in scores if s.dimension == "fluency"]
    assert [(s.sample, s.label) for s in fluency] == [(0, 1), (1, 2), (2, 3)]     # seeds 1, 2, 3
    assert sorted({p.seed for _, p, _ in backend.requests}) == [1, 2, 3]
    assert all(p.temperature == 0.7 for _, p, _ in backend.requests)


async def test_one_sample_sends_the_params_unchanged() -> None:
    backend = ScriptedBackend(lambda *a: "Score: 2")
    scores = await Scorer(load_profile("default"), backend, samples=1).score("k", "en", TRANSCRIPT)
    assert all(s.sample == 0 for s in scores) and all(p.seed is None for _, p, _ in backend.requests)
    with pytest.raises(ValueError, match="samples must be at least 1"):
        Scorer(load_profile("default"), backend, samples=0)


async def test_a_single_sampled_request_is_seeded_so_it_can_be_cached() -> None:
    """Greedy (or already seeded) with one sample: sent as configured; sampled with one sample: seed 0, never unseeded."""
    backend = ScriptedBackend(lambda *a: "Score: 2")
    await Scorer(load_profile("default"), backend, params=SamplingParams(max_tokens=8, temperature=0.7)).score("k", "en", TRANSCRIPT)
    await Scorer(load_profile("default"), backend, params=SamplingParams(max_tokens=8, temperature=0.7, seed=9)).score("k", "en", TRANSCRIPT)
    assert [p.seed for _, p, _ in backend.requests] == [0] * 7 + [9] * 7
    assert all(p.temperature == 0.7 for _, p, _ in backend.requests)


async def test_schedule_scores_only_the_dimensions_asked_for() -> None:
    backend = ScriptedBackend(lambda *a: "Score: 2")
    seen: list[Score] = []
    scorer = Scorer(load_profile("default"), backend, score_every_round=True, sinks=[seen.append])
    scores = await scorer.schedule("k", "en", TRANSCRIPT, "sup", ["tech", "human"])
    assert {(s.dimension, s.round) for s in scores} == {(d, r) for d in ("tech", "human") for r in (FINAL, 1)}
    assert len(backend.requests) == 4 and seen == scores
    assert await asyncio.wait_for(scorer.schedule("k", "en", TRANSCRIPT, "sup", []), 1) == []  # nothing asked: done at once
    await asyncio.wait_for(scorer.drain(), 1)


class ScoreRecorder(RoutedAgent):
    def __init__(self, heard: list[Score]) -> None:
        super().__init__("records scores")
        self.heard = heard

    @message_handler
    async def on_score(self, message: Score, ctx: MessageContext) -> None:
        assert ctx.topic_id is not None and ctx.topic_id.type == SCORES_TOPIC
        self.heard.append(message)


async def test_the_judge_agent_publishes_every_score_on_the_scores_topic() -> None:
    """DESIGN's flow: the judge observes episode ends and publishes each score; an observer of ``scores`` records them."""
    heard: list[Score] = []
    runtime = make_runtime()
    scorer = Scorer(load_profile("default"), ScriptedBackend(lambda *a: "Score: 3"), sinks=[score_publisher(runtime)])
    await JudgeAgent.register(runtime, "judge", lambda: JudgeAgent(scorer))
    await ScoreRecorder.register(runtime, "recorder", lambda: ScoreRecorder(heard))
    await runtime.add_subscription(TypeSubscription(EPISODES_TOPIC, "judge"))
    await runtime.add_subscription(TypeSubscription(SCORES_TOPIC, "recorder"))
    runtime.start()
    ends = TopicId(EPISODES_TOPIC, EPISODES_SOURCE)
    await runtime.publish_message(EpisodeEnded("k1", "en", "truncated", "max_rounds=5", tuple(TRANSCRIPT), supporter="sup"), ends)
    await runtime.publish_message(EpisodeEnded("k2", "en", "failed", "down", tuple(TRANSCRIPT[:2]), supporter="sup"), ends)
    await runtime.idle()  # the ends are delivered and scoring scheduled; the runtime keeps running
    await scorer.drain()
    await runtime.stop_when_idle()
    assert sorted((s.episode_key, s.dimension, s.label) for s in heard) == sorted(("k1", d, 3) for d in load_profile("default").keys)
