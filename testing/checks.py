"""Contract checks for plugins, in the spirit of Gymnasium's ``check_env``: call one in your plugin's tests.

Each check drives the plugin the way esc-eval will (on scripted episodes, or with real requests for
a backend) and raises ``ContractError`` naming the plugin, the method and what is wrong, at the first
breach. The contracts are those of ``esc_eval.environments.termination.Detector``,
``esc_eval.environments.turn_policies.TurnPolicy``, ``esc_eval.environments.behaviours.SeekerBehaviour``
and ``esc_eval.agents.backends.base.ChatBackend``; docs/plugins.md shows one plugin of each kind.

    >>> from esc_eval.environments.termination import MaxRounds
    >>> check_detector(MaxRounds(2))
    >>> class Shouting:
    ...     def check(self, episode):
    ...         return "STOP"
    >>> try:
    ...     check_detector(Shouting())
    ... except ContractError as exc:
    ...     print(exc)
    detector Shouting: check() returned str 'STOP' on an empty episode; expected an Outcome or None
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import astuple
from typing import Any

from esc_eval.agents.backends import BackendError, BackendStats, Shared
from esc_eval.agents.messages import USAGE, ChatMessage, Completion, SamplingParams
from esc_eval.environments.episode import Episode, Outcome, OutcomeKind, Role
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.personas import RoleBreakRule
from esc_eval.runs.config_sections import EndpointConfig


class ContractError(AssertionError):
    """A plugin breaks its contract; the message names the plugin, the method and what is wrong."""


# --------------------------------------------------------------------------- scripted episodes

SUPPORTER_LINES = (
    "That sounds really hard. I understand why you feel this way.",
    "You should try talking to someone you trust about it.",
    "Okay. Go on.",
)
"""Supporter replies the episodes rotate through: empathy, advice, neither (the cues personas react to)."""

SEEKER_LINES = (
    "I don't even know where to start. Everything feels heavy lately.",
    "It's mostly at home. I keep snapping at people I love.",
    "Maybe. I just feel so tired all the time.",
    "Thanks, I think that helps a little. Goodbye. [END]",
)


@functools.cache
def _card(language: str, index: int = 0) -> RoleCard:
    return builtin_cards(language)[index]


def _episode(card: RoleCard, key: str = "check") -> Episode:
    return Episode(key, card, "check-supporter", "check-persona", seed=7)


def _usage(role: Role, text: str) -> dict[str, Any]:
    words = len(text.split())
    return {"prompt_tokens": 40 + words, "completion_tokens": words, "latency": 0.01}


def sample_episodes() -> Iterator[Episode]:
    """Episodes a detector or turn policy must take: empty, opener only, every prefix of a five-round
    conversation (an end marker in the last seeker line), a Chinese one, and one where the seeker speaks twice."""
    yield _episode(_card("en"))
    opener = "Hello, I'm here to listen. What's on your mind?"
    lines = [(Role.SUPPORTER, opener, False)]
    for round_ in range(5):
        lines.append((Role.SEEKER, SEEKER_LINES[min(round_, len(SEEKER_LINES) - 1)], True))
        lines.append((Role.SUPPORTER, SUPPORTER_LINES[round_ % len(SUPPORTER_LINES)], True))
    for length in range(1, len(lines) + 1):
        episode = _episode(_card("en"))
        for role, text, generated in lines[:length]:
            episode.add(role, text, generated=generated, **(_usage(role, text) if generated else {}))
        yield episode
    chinese = _episode(_card("zh"))
    for role, text in ((Role.SUPPORTER, "你好，我在这里听你说。"), (Role.SEEKER, "最近家里的事让我很累。"), (Role.SUPPORTER, "听起来真的很不容易。")):
        chinese.add(role, text, **_usage(role, text))
    yield chinese
    twice = _episode(_card("en", 1))
    for role, text in ((Role.SEEKER, SEEKER_LINES[0]), (Role.SEEKER, SEEKER_LINES[1]), (Role.SUPPORTER, SUPPORTER_LINES[0])):
        twice.add(role, text, **_usage(role, text))
    yield twice


def _described(episode: Episode) -> str:
    if not episode.turns:
        return "an empty episode"
    roles = ", ".join(("opener" if not t.generated else t.role.value) for t in episode.turns)
    return f"an episode of {len(episode.turns)} turns ({roles})"


def _snapshot(episode: Episode) -> tuple[Any, ...]:
    return tuple(astuple(t) for t in episode.turns), json.dumps(episode.state, sort_keys=True, default=repr), episode.outcome


def _brief(value: object) -> str:
    """A result as a message shows it: an outcome as it is written (``Outcome.truncated('...')``), else its repr, cut."""
    if isinstance(value, Outcome):
        return f"Outcome.{value.kind.value}({value.reason!r:.60})"
    return f"{value!r:.60}"


def _shown(value: object) -> str:
    return f"{type(value).__name__} {_brief(value)}"


# --------------------------------------------------------------------------- shared checks


class _Subject:
    """The plugin under check: names it in every message."""

    def __init__(self, kind: str, plugin: object):
        self.kind, self.plugin = kind, plugin
        self.label = f"{kind} {getattr(plugin, '__qualname__', None) or type(plugin).__qualname__}"

    def fail(self, what: str) -> ContractError:
        return ContractError(f"{self.label}: {what}")

    def method(self, name: str, *, sync: bool = True) -> Callable[..., Any]:
        """The plugin's method ``name``; it must exist, and be a plain (``sync``) or an ``async def`` method."""
        found = getattr(self.plugin, name, None)
        if not callable(found):
            raise self.fail(f"has no {name}() method")
        if sync and inspect.iscoroutinefunction(found):
            raise self.fail(f"{name}() is async; esc-eval calls it synchronously after every turn")
        if not sync and not inspect.iscoroutinefunction(found):
            raise self.fail(f"{name}() must be an async method (async def); esc-eval awaits it")
        return found

    def call(self, method: Callable[..., Any], episode: Episode, *args: Any) -> Any:
        """``method(episode, *args)``: it must not raise, nor return an awaitable."""
        name = getattr(method, "__name__", "method")
        try:
            result = method(episode, *args)
        except Exception as exc:
            raise self.fail(f"{name}() raised {type(exc).__name__}: {exc} on {_described(episode)}") from exc
        if inspect.isawaitable(result):
            getattr(result, "close", lambda: None)()
            raise self.fail(f"{name}() returned an awaitable on {_described(episode)}; esc-eval calls it synchronously")
        return result

    def pure(self, method: Callable[..., Any], episode: Episode) -> Any:
        """``method(episode)`` twice: the same answer both times, and the episode left as it was."""
        name = getattr(method, "__name__", "method")
        before = _snapshot(episode)
        first = self.call(method, episode)
        if _snapshot(episode) != before:
            raise self.fail(f"{name}() changed {_described(episode)} (its turns, state or outcome); it may only read the episode")
        second = self.call(method, episode)
        if first != second:
            raise self.fail(f"{name}() gave {_brief(first)} then {_brief(second)} on the same {_described(episode)[3:]}: "
                            "it must be a function of the episode (no hidden state)")
        return first


def _outcome(subject: _Subject, method: str, result: object, episode: Episode, kinds: tuple[OutcomeKind, ...]) -> None:
    if result is None:
        return
    if not isinstance(result, Outcome):
        raise subject.fail(f"{method}() returned {_shown(result)} on {_described(episode)}; expected an Outcome or None")
    if result.kind not in kinds:
        allowed = " or ".join(f"Outcome.{k.value}(...)" for k in kinds)
        raise subject.fail(f"{method}() returned a {result.kind.value} outcome on {_described(episode)}; expected {allowed} "
                           "('failed' is for a backend giving up)")
    if not isinstance(result.reason, str) or not result.reason.strip():
        raise subject.fail(f"{method}() returned an outcome without a reason on {_described(episode)}; the store and report show it")


# --------------------------------------------------------------------------- the four checks


def check_detector(detector: object) -> None:
    """A termination detector: ``check(episode) -> Outcome | None``, synchronous, a pure function of the episode.

    It is called on every sample episode (``sample_episodes``: empty, opener only, every prefix of a
    five-round conversation, ...) and must return ``None`` or a ``terminated``/``truncated`` ``Outcome``
    with a reason, give the same answer twice, and leave the episode unchanged.

    Raises:
        ContractError: the first breach found, naming the detector and the episode.
    """
    subject = _Subject("detector", detector)
    check = subject.method("check")
    for episode in sample_episodes():
        result = subject.pure(check, episode)
        _outcome(subject, "check", result, episode, (OutcomeKind.TERMINATED, OutcomeKind.TRUNCATED))


MAX_SILENT_TURNS = 24
"""Turns within which a turn policy that never ends a conversation must have let the supporter speak."""


def check_turn_policy(policy: object) -> None:
    """A turn policy: a bool ``opener`` and ``next_speaker(episode) -> Role | None``, synchronous and pure.

    On every sample episode ``next_speaker`` must return a ``Role`` (not its text) or ``None``, the
    same twice, leaving the episode unchanged. Played from a new episode (after the opener, when
    ``opener`` is true), its first answer must be a role, and unless it ends the conversation the
    supporter must speak within ``MAX_SILENT_TURNS`` turns, so that rounds, and ``max_rounds``, advance.

    Raises:
        ContractError: the first breach found.
    """
    subject = _Subject("turn policy", policy)
    opener = getattr(policy, "opener", None)
    if not isinstance(opener, bool):
        raise subject.fail(f"opener must be a bool (whether the supporter's fixed greeting opens the episode), got {_shown(opener)}")
    next_speaker = subject.method("next_speaker")

    def speaker(episode: Episode) -> Role | None:
        role = subject.pure(next_speaker, episode)
        if role is not None and not isinstance(role, Role):
            hint = f"; return Role.{str(role).upper()}" if str(role) in {r.value for r in Role} else ""
            raise subject.fail(f"next_speaker() returned {_shown(role)} on {_described(episode)}; expected a Role or None{hint}")
        return role

    for episode in sample_episodes():
        speaker(episode)
    episode = _episode(_card("en"))
    if opener:
        episode.add(Role.SUPPORTER, "Hello, I'm here to listen.", generated=False)
    for turn in range(MAX_SILENT_TURNS):
        role = speaker(episode)
        if role is None:
            if turn == 0:
                raise subject.fail("next_speaker() returned None on a new episode: the conversation would end before anyone spoke")
            return
        text = SEEKER_LINES[0] if role is Role.SEEKER else SUPPORTER_LINES[0]
        episode.add(role, text, **_usage(role, text))
    spoke = {t.role for t in episode.turns if t.generated}
    for role in Role:
        if role not in spoke:
            raise subject.fail(f"the {role.value} never spoke in {MAX_SILENT_TURNS} turns of a new episode "
                               f"(next_speaker() never returned Role.{role.name} nor None)")


def check_persona(behaviour: object, *, languages: Sequence[str] = ("en", "zh"), rounds: int = 6) -> None:
    """A seeker behaviour: ``directives``, ``on_turn`` and ``wants_to_end``, synchronous, with its state per episode.

    A conversation of ``rounds`` rounds is played on a card of each language, as the environment
    plays it: ``directives`` before each seeker turn (text), ``on_turn`` after each turn (``None``;
    ``episode.state`` stays JSON-able, the store records it), ``wants_to_end`` after each turn
    (``None`` or a ``terminated`` outcome). Then the same conversation is played again, interleaved
    turn by turn with another episode: a behaviour is shared by every episode of its persona, so it
    must say exactly the same things (per-episode state lives in ``episode.state``, randomness comes
    from ``episode.seed``).

    Raises:
        ContractError: the first breach found.
    """
    subject = _Subject("persona", behaviour)
    methods = [subject.method(name) for name in ("directives", "on_turn", "wants_to_end")]
    rule = getattr(behaviour, "role_break", None)
    if rule is not None and not isinstance(rule, RoleBreakRule):
        raise subject.fail(f"role_break must be an esc_eval.roles.personas.RoleBreakRule or absent, got {_shown(rule)}")
    for language in languages:
        alone = list(_play(subject, methods, [_episode(_card(language), "a")], rounds))
        beside = list(_play(subject, methods, [_episode(_card(language), "a"), _episode(_card(language, 1), "b")], rounds))
        replayed = [step for key, step in beside if key == "a"]
        for (_, first), again in zip(alone, replayed):
            if first != again:
                raise subject.fail(f"the same {language} episode played again beside another one went differently at {first[0]}: "
                                   f"{_brief(first[1])} then {_brief(again[1])}; keep per-episode state in episode.state (the behaviour "
                                   "is shared by every episode of its persona) and draw randomness from episode.seed")
        if len(alone) != len(replayed):
            raise subject.fail(f"the same {language} episode played again beside another one ended after a different number of turns")


def _play(subject: _Subject, methods: list[Callable[..., Any]], episodes: list[Episode], rounds: int) -> Iterator[tuple[str, tuple[str, Any]]]:
    """Play ``episodes`` turn by turn, interleaved; yield ``(episode key, (step, what the behaviour said))``."""
    directives, on_turn, wants_to_end = methods
    live = list(episodes)

    def add(episode: Episode, role: Role, text: str, generated: bool = True) -> Iterator[tuple[str, tuple[str, Any]]]:
        turn = episode.add(role, text, generated=generated, **(_usage(role, text) if generated else {}))
        returned = subject.call(on_turn, episode, turn)
        if returned is not None:
            raise subject.fail(f"on_turn() returned {_shown(returned)}; it updates episode.state and returns None")
        try:
            state = json.dumps(episode.state, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise subject.fail(f"episode.state is not JSON-able after on_turn() ({exc}); the store records it on every seeker turn") from None
        yield episode.key, (f"turn {turn.index} state", state)
        ended = subject.call(wants_to_end, episode)
        _outcome(subject, "wants_to_end", ended, episode, (OutcomeKind.TERMINATED,))
        yield episode.key, (f"turn {turn.index} wants_to_end", ended)
        if ended is not None:
            episode.outcome = ended
            live.remove(episode)

    for episode in episodes:
        yield from add(episode, Role.SUPPORTER, "Hello, I'm here to listen. What's on your mind?", generated=False)
    for round_ in range(rounds):
        for episode in list(live):
            said = subject.call(directives, episode)
            if not isinstance(said, str):
                raise subject.fail(f"directives() returned {_shown(said)} on {_described(episode)}; expected text ('' for none)")
            yield episode.key, (f"round {round_ + 1} directives", said)
            yield from add(episode, Role.SEEKER, SEEKER_LINES[min(round_, len(SEEKER_LINES) - 1)])
        for episode in list(live):
            offset = 0 if episode.key == "a" else 1  # the episodes hear different supporters
            yield from add(episode, Role.SUPPORTER, SUPPORTER_LINES[(round_ + offset) % len(SUPPORTER_LINES)])


MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a supportive listener. Answer in one sentence."},
    {"role": "user", "content": "I have been feeling overwhelmed at work lately."},
]


async def check_backend(backend: object, *, endpoint: EndpointConfig | None = None, failing: object = None,
                        timeout: float = 60.0, params: SamplingParams = SamplingParams(max_tokens=32, temperature=0.0)) -> None:
    """A chat backend, or the factory a backend plugin registers; a coroutine: ``await check_backend(...)``.

    ``backend`` is a ``ChatBackend`` or a factory: a factory is called as esc-eval's pool calls it,
    ``factory(endpoint, name="check", shared=Shared(), **endpoint.options)``, so ``endpoint`` is then
    required. The backend must keep ``stats`` (a ``BackendStats``), have ``async def complete(messages,
    params, *, model=None)`` returning a ``Completion`` (non-empty text, token counts and latency not
    negative) and counting it in ``stats``, serve several requests at once, and ``async def aclose()``.
    ``failing`` (a backend, or for a factory an endpoint, that cannot succeed: a closed port, a server
    answering 500) must raise a ``BackendError``, the typed errors retries and the store rely on.

    Raises:
        ContractError: the first breach found.
    """
    made = _made(backend, endpoint)
    await _checked(made, _check_backend(made, timeout, params), timeout)
    if failing is None:
        return
    if isinstance(failing, EndpointConfig) and hasattr(backend, "complete"):
        raise made.fail("failing is an endpoint, which only a factory can use; pass a failing backend instead")
    broken = _made(backend, failing) if isinstance(failing, EndpointConfig) else _made(failing, None)
    await _checked(broken, _check_failure(broken, timeout, params), timeout)


async def _checked(subject: _Backend, checks: Coroutine[Any, Any, None], timeout: float) -> None:
    """Run ``checks``, then check ``aclose``; after a failed check, close what can be closed and report the failure."""
    try:
        await checks
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(subject.backend.aclose(), timeout)
        if subject.shared is not None:
            await subject.shared.aclose()
        raise
    await _closed(subject, timeout)


class _Backend(_Subject):
    """A backend under check, and the ``Shared`` its factory was given (closed after it)."""

    def __init__(self, backend: Any, shared: Shared | None = None):
        super().__init__("backend", backend)
        self.backend, self.shared = backend, shared


def _made(backend: object, endpoint: EndpointConfig | None) -> _Backend:
    if hasattr(backend, "complete"):
        return _Backend(backend)
    subject = _Subject("backend factory", backend)
    if not callable(backend):
        raise subject.fail("is neither a backend (complete, aclose, stats) nor a factory making one")
    if endpoint is None:
        raise subject.fail("a factory needs an endpoint to be checked: check_backend(factory, endpoint=EndpointConfig(...))")
    options = dict(endpoint.options)
    try:
        inspect.signature(backend).bind(endpoint, name="check", shared=None, **options)
    except TypeError as exc:
        raise subject.fail(f"must take (endpoint, *, name, shared, **its options), as BACKENDS calls it: {exc}") from None
    shared = Shared()
    try:
        made = backend(endpoint, name="check", shared=shared, **options)
    except Exception as exc:
        raise subject.fail(f"raised {type(exc).__name__}: {exc} making a backend for {endpoint}") from exc
    if not hasattr(made, "complete"):
        raise subject.fail(f"returned {_shown(made)}, not a backend (complete, aclose, stats)")
    return _Backend(made, shared)


async def _check_backend(subject: _Backend, timeout: float, params: SamplingParams) -> None:
    backend = subject.backend
    stats = getattr(backend, "stats", None)
    if not isinstance(stats, BackendStats):
        raise subject.fail(f"stats must be a BackendStats (the monitor and the store read its counters), got {_shown(stats)}")
    complete = subject.method("complete", sync=False)
    subject.method("aclose", sync=False)
    try:
        inspect.signature(complete).bind(MESSAGES, params, model=None)
    except TypeError as exc:
        raise subject.fail(f"complete() must take (messages, params, *, model=None): {exc}") from None
    requests = stats.requests
    _check_completion(subject, await _completion(subject, complete(MESSAGES, params), timeout))
    if stats.requests != requests + 1:
        raise subject.fail(f"stats.requests went from {requests} to {stats.requests} over one completion; call stats.done(completion)")
    several = await _completion(subject, asyncio.gather(*(complete(MESSAGES, params) for _ in range(4))), timeout, several=True)
    if stats.requests != requests + 5:
        raise subject.fail(f"stats.requests went from {requests + 1} to {stats.requests} over 4 concurrent completions")
    for completion in several:
        _check_completion(subject, completion)


async def _completion(subject: _Subject, call: Any, timeout: float, *, several: bool = False) -> Any:
    what = "4 concurrent complete() calls" if several else "complete()"
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise subject.fail(f"{what} did not return within {timeout:g} s") from None
    except BackendError as exc:
        raise subject.fail(f"{what} failed on a plain request: {type(exc).__name__} ({exc.kind}): {exc}") from exc
    except Exception as exc:
        raise subject.fail(f"{what} raised {type(exc).__name__}: {exc}; failures must be BackendError subclasses "
                           "(esc_eval.agents.backends.base)") from exc


def _check_completion(subject: _Subject, completion: object) -> None:
    if not isinstance(completion, Completion):
        raise subject.fail(f"complete() returned {_shown(completion)}; expected an esc_eval.agents.messages.Completion")
    if not isinstance(completion.text, str) or not completion.text.strip():
        raise subject.fail(f"complete() returned empty text {completion.text!r:.40}; an empty reply is a fault: raise EmptyReply")
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(completion, name)
        if type(value) is not int or value < 0:
            raise subject.fail(f"Completion.{name} must be a count (an int, 0 or more), got {_shown(value)}")
    if type(completion.latency) not in (int, float) or completion.latency < 0:
        raise subject.fail(f"Completion.latency must be seconds (0 or more), got {_shown(completion.latency)}")
    if not isinstance(completion.model, str):
        raise subject.fail(f"Completion.model must be text (the model that answered), got {_shown(completion.model)}")
    if completion.usage not in USAGE:
        raise subject.fail(f"Completion.usage must say where the token counts come from ({', '.join(USAGE)}), got {_shown(completion.usage)}")


async def _check_failure(subject: _Backend, timeout: float, params: SamplingParams) -> None:
    complete = subject.method("complete", sync=False)
    try:
        result = await asyncio.wait_for(complete(MESSAGES, params), timeout)
    except TimeoutError:
        raise subject.fail(f"the failing backend's complete() neither failed nor returned within {timeout:g} s") from None
    except BackendError as exc:
        if not isinstance(exc.kind, str) or not exc.kind:
            raise subject.fail(f"{type(exc).__name__}.kind must name the fault (429, 5xx, timeout, ...), got {exc.kind!r}") from exc
        return
    except Exception as exc:
        raise subject.fail(f"the failing backend's complete() raised {type(exc).__name__}: {exc}; failures must be BackendError "
                           "subclasses (esc_eval.agents.backends.base), so retries and the store can tell them apart") from exc
    raise subject.fail(f"the failing backend's complete() returned {_shown(result)} instead of raising a BackendError")


async def _closed(subject: _Backend, timeout: float) -> None:
    aclose = subject.method("aclose", sync=False)
    try:
        returned = await asyncio.wait_for(aclose(), timeout)
    except TimeoutError:
        raise subject.fail(f"aclose() did not return within {timeout:g} s") from None
    except Exception as exc:
        raise subject.fail(f"aclose() raised {type(exc).__name__}: {exc}") from exc
    if returned is not None:
        raise subject.fail(f"aclose() returned {_shown(returned)}; it releases sessions, threads and models and returns None")
    if subject.shared is not None:
        await subject.shared.aclose()


__all__ = ["ContractError", "MESSAGES", "check_backend", "check_detector", "check_persona", "check_turn_policy", "sample_episodes"]
