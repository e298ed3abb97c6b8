"""LeanRuntime: autogen-core's addressing and routing, delivered directly."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from autogen_core import AgentId, DefaultInterventionHandler, MessageContext, RoutedAgent, TopicId, TypeSubscription, message_handler

from esc_eval.environments.runtime import LeanRuntime, make_runtime


@dataclass
class Ask:
    text: str


@dataclass
class News:
    text: str


class Echo(RoutedAgent):
    """Replies to ``Ask``; records ``News``; fails on request."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.news: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.cancelled = False

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> str:
        if message.text == "fail":
            raise ValueError("asked to fail")
        if message.text == "wait":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return f"{self.id.key}:{message.text}:{ctx.is_rpc}"

    @message_handler
    async def on_news(self, message: News, ctx: MessageContext) -> None:
        await self.release.wait()
        if message.text == "fail":
            raise RuntimeError("news handler broke")
        self.news.append(f"{ctx.topic_id.type if ctx.topic_id else None}:{message.text}")


async def runtime_with(*types: str, topics: dict[str, list[str]] | None = None) -> tuple[LeanRuntime, dict[str, Echo]]:
    runtime = make_runtime()
    made: dict[str, Echo] = {}

    for name in types:
        def factory(name: str = name) -> Echo:
            made[name] = Echo()
            return made[name]

        await Echo.register(runtime, name, factory)
    for topic, subscribers in (topics or {}).items():
        for name in subscribers:
            await runtime.add_subscription(TypeSubscription(topic, name))
    runtime.start()
    return runtime, made


async def test_send_returns_the_reply_and_instantiates_lazily() -> None:
    runtime, made = await runtime_with("a")
    assert made == {}
    assert await runtime.send_message(Ask("hi"), AgentId("a", "k1")) == "k1:hi:True"
    assert await runtime.send_message(Ask("again"), AgentId("a", "k1")) == "k1:again:True"
    assert list(made) == ["a"]  # one instance for key k1, reused
    await runtime.stop_when_idle()


async def test_send_propagates_the_handlers_exception_and_unknown_types() -> None:
    runtime, _ = await runtime_with("a")
    with pytest.raises(ValueError, match="asked to fail"):
        await runtime.send_message(Ask("fail"), AgentId("a", "k"))
    with pytest.raises(LookupError, match="nobody"):
        await runtime.send_message(Ask("hi"), AgentId("nobody", "k"))
    await runtime.stop_when_idle()


async def test_cancelling_the_sender_cancels_the_handler() -> None:
    runtime, made = await runtime_with("a")
    task = asyncio.create_task(runtime.send_message(Ask("wait"), AgentId("a", "k")))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert made["a"].cancelled
    await runtime.stop_when_idle()


async def test_publish_returns_at_once_and_reaches_only_subscribers_of_that_topic() -> None:
    runtime, made = await runtime_with("both", "ends", topics={"turns": ["both"], "episodes": ["both", "ends"]})
    await runtime.send_message(Ask("make"), AgentId("both", "run"))
    await runtime.send_message(Ask("make"), AgentId("ends", "run"))
    made["both"].release.clear()
    await runtime.publish_message(News("t1"), TopicId("turns", "run"))  # returns while the handler waits
    await runtime.publish_message(News("e1"), TopicId("episodes", "run"))
    await asyncio.sleep(0.05)
    assert made["both"].news == [] and made["ends"].news == ["episodes:e1"]
    made["both"].release.set()
    await runtime.stop_when_idle()  # waits for the held deliveries
    assert made["both"].news == ["turns:t1", "episodes:e1"]
    assert made["ends"].news == ["episodes:e1"]


async def test_a_failing_subscriber_is_logged_and_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    runtime, made = await runtime_with("bad", "good", topics={"episodes": ["bad", "good"]})
    await runtime.send_message(Ask("make"), AgentId("good", "run"))
    with caplog.at_level(logging.ERROR, logger="esc_eval.environments.runtime"):
        await runtime.publish_message(News("fail"), TopicId("episodes", "run"))
        await runtime.publish_message(News("fine"), TopicId("episodes", "run"))
        await runtime.stop_when_idle()
    assert "news handler broke" in caplog.text and "bad/run" in caplog.text
    assert made["good"].news == ["episodes:fine"] and made["bad"].news == ["episodes:fine"]


async def test_intervention_handlers_use_autogens_queue() -> None:
    seen: list[Any] = []

    class Spy(DefaultInterventionHandler):
        async def on_send(self, message: Any, *, message_context: MessageContext, recipient: AgentId) -> Any:
            seen.append(message)
            return message

    runtime = LeanRuntime(intervention_handlers=[Spy()])
    await Echo.register(runtime, "a", Echo)
    runtime.start()
    assert await runtime.send_message(Ask("hi"), AgentId("a", "k")) == "k:hi:True"
    await runtime.stop_when_idle()
    assert seen == [Ask("hi")]


async def test_subscriptions_added_or_removed_after_a_publish_change_who_hears_the_next() -> None:
    runtime, made = await runtime_with("a", "b", topics={"episodes": ["a"]})
    await runtime.publish_message(News("one"), TopicId("episodes", "run"))
    await runtime.add_subscription(TypeSubscription("episodes", "b", id="b-episodes"))
    with pytest.raises(ValueError, match="already exists"):  # autogen's own check still applies
        await runtime.add_subscription(TypeSubscription("episodes", "b", id="b-episodes"))
    await runtime.publish_message(News("two"), TopicId("episodes", "run"))
    await runtime.remove_subscription("b-episodes")
    await runtime.publish_message(News("three"), TopicId("episodes", "run"))
    await runtime.stop_when_idle()
    assert made["a"].news == ["episodes:one", "episodes:two", "episodes:three"]
    assert made["b"].news == ["episodes:two"]


@pytest.mark.parametrize("queued", [False, True])
async def test_idle_waits_for_published_messages_and_keeps_the_runtime_running(queued: bool) -> None:
    class Pass(DefaultInterventionHandler):
        pass

    runtime = LeanRuntime(intervention_handlers=[Pass()] if queued else None)
    made: dict[str, Echo] = {}

    def factory() -> Echo:
        made["a"] = Echo()
        return made["a"]

    await Echo.register(runtime, "a", factory)
    await runtime.add_subscription(TypeSubscription("episodes", "a"))
    runtime.start()
    await runtime.send_message(Ask("make"), AgentId("a", "run"))
    await runtime.publish_message(News("before"), TopicId("episodes", "run"))
    await runtime.idle()
    assert made["a"].news == ["episodes:before"]
    await runtime.publish_message(News("after"), TopicId("episodes", "run"))  # still running: delivered
    assert await runtime.send_message(Ask("hi"), AgentId("a", "run")) == "run:hi:True"
    await runtime.stop_when_idle()
    assert made["a"].news == ["episodes:before", "episodes:after"]
