"""``esc-eval run CONFIG --dry-run``: what a run will ask of each endpoint and cost, before anything is contacted.

Each planned episode is played on paper: the config's own turn policy and termination detectors
decide who speaks and when it ends, the protocol, the persona's directives and the supporter's
system prompt build each request as the environment would (``esc_eval.environments.views``), and
the judge profile and safety rubric build the judge's requests from the finished transcript. Only
the replies are imagined: each has a length in tokens and no text, and every later prompt that
carries it grows by that length. Nothing is sent and nothing is written.

Tokens of real text are counted with the endpoint model's tokenizer when it is a local folder
(``esc_eval.agents.backends.usage.local_tokenizer``), else as a reply without ``usage`` is estimated (``usage.estimate``),
plus ``MESSAGE_TOKENS`` per chat message for the chat template. Two passes:

* the upper bound (``cost_usd_max``): every reply at its endpoint's ``max_tokens``, every episode to its
  limit, every seeker turn asked ``1 + role_break_retries`` times (a reply breaking the role is asked again);
* the expectation (``cost_usd``): replies at ``DEFAULT_REPLY_FRACTION`` of ``max_tokens``, or, with a
  pilot store (``Calibration``), at the pilot's mean reply length per endpoint, and scaled per endpoint
  by what the pilot really used against what this model says the pilot's episodes would use (this
  takes in early endings, role-break retries and the server's real token counts).

With a store to resume (``Resumed``, ``--dry-run --resume``) only the planned episodes a resume would play are
estimated: those the store has not finished (``resume.resume_skips``, the runners' own rule).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.agents.backends.endpoint import EndpointConfig
from esc_eval.agents.backends.usage import estimate as estimate_tokens
from esc_eval.agents.backends.usage import local_tokenizer
from esc_eval.agents.judge.agent import scored_rounds
from esc_eval.agents.judge.safety import EXCLUDED, safety_case
from esc_eval.agents.messages import FINAL, ChatMessage
from esc_eval.environments.behaviours import NEUTRAL, SeekerBehaviour
from esc_eval.environments.episode import Episode, Role
from esc_eval.environments.termination import AnyOf, Detector
from esc_eval.environments.turn_policies import TurnPolicy
from esc_eval.environments.views import seeker_view, supporter_view
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.personas import DEFAULT_ROLE_BREAK_RETRIES, RoleBreakRule
from esc_eval.runs.execution.plan import RunPlan, Seeker
from esc_eval.runs.pricing import ROLES, Price, Prices
from esc_eval.runs.store import PlannedEpisode

DEFAULT_REPLY_FRACTION = 0.5
"""Without a pilot store, a reply is expected at half its endpoint's ``max_tokens`` (docs/cost.md)."""
MESSAGE_TOKENS = 4
"""Tokens a chat template adds per message (role markers, separators), as OpenAI documents for its chat format."""
PILOT_SHARE = 0.1
"""A pilot of at least this share of the plan's episodes calibrates within ±35 % (tests/runs/execution/test_estimate.py)."""
MAX_TURNS = 1000
"""A turn policy and detectors that never end an episode are cut here on paper (a run would run until its limits)."""

Group = tuple[str, str]
"""``(role, name)``: who pays for a request; the name is the seeker's label or the supporter's name ("" for judge and safety)."""


@dataclass
class Tally:
    """Requests and tokens of one group (float: an expectation is an average)."""

    requests: float = 0.0
    input: float = 0.0
    output: float = 0.0

    def add(self, other: Tally, scale: float = 1.0) -> None:
        self.requests += other.requests * scale
        self.input += other.input * scale
        self.output += other.output * scale


Tallies = dict[Group, Tally]


def _merge(into: Tallies, more: Tallies, scale: float = 1.0) -> None:
    for group, tally in more.items():
        into.setdefault(group, Tally()).add(tally, scale)


@functools.lru_cache(maxsize=65536)
def count_text(text: str, model: str | None) -> int:
    """Tokens of ``text``: ``model``'s tokenizer when it is a local folder or GGUF file, else the backends' estimate
    (``ceil(chars / 4)``), so the paper run counts as a server without ``usage`` is counted."""
    tokenizer = local_tokenizer(model) if model else None
    if tokenizer is not None:
        return len(tokenizer.encode(text, add_special_tokens=False))
    return estimate_tokens(text)


def prompt_tokens(messages: Iterable[ChatMessage], model: str | None, replies: int) -> int:
    """A request's input: its real text counted, plus ``replies`` (the imagined replies it carries), plus the template's share."""
    listed = list(messages)
    return sum(count_text(m["content"], model) for m in listed) + replies + MESSAGE_TOKENS * len(listed)


@dataclass(frozen=True)
class Replies:
    """How long each group's replies are, in tokens, and whether seeker turns are asked again as often as allowed."""

    length: Callable[[Group], float]
    retries: bool = False


class Simulator:
    """Plays the plan's episodes on paper (see the module docstring); one per pass, memoising identical episodes."""

    def __init__(self, plan: RunPlan, replies: Replies):
        self.plan, self.replies = plan, replies
        self.policy: TurnPolicy = plan.turn_policy()
        self.termination: Detector = plan.termination()
        self.seekers = {s.label: s for s in plan.seeker_plans()}
        self.supporters = {s.name: s for s in plan.config.supporters}
        self._role_breaks = {label: plan.role_break(s.section) for label, s in self.seekers.items()}  # read once: each reads YAML
        self._memo: dict[tuple[int, str, str, str], Tallies] = {}
        self._judge_text: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def episode(self, planned: PlannedEpisode, card: RoleCard) -> Tallies:
        """What one planned episode asks of each group (repeats of an episode ask the same)."""
        memo = (planned.card_index, planned.seeker, planned.persona, planned.supporter)
        if memo not in self._memo:
            self._memo[memo] = self._play(planned, card)
        return self._memo[memo]

    def _play(self, planned: PlannedEpisode, card: RoleCard) -> Tallies:
        seeker = self.seekers.get(planned.seeker) or next(iter(self.seekers.values()))
        supporter = self.supporters[planned.supporter]
        behaviour: SeekerBehaviour = self.plan.behaviours.get(planned.persona, NEUTRAL)
        episode = Episode(planned.key, card, planned.supporter, planned.persona, planned.seed, planned.repeat)
        tallies: Tallies = defaultdict(Tally)
        seeker_group, supporter_group = ("seeker", seeker.label), ("supporter", supporter.name)
        if self.policy.opener:
            _call(behaviour.on_turn, episode, episode.add(Role.SUPPORTER, seeker.protocol.opener(card.language), generated=False))
        carried = 0  # tokens of the imagined replies so far: every later prompt of either side carries them
        while len(episode.turns) < MAX_TURNS and not self._ended(episode):
            role = _call(self.policy.next_speaker, episode)  # a policy that raises fails the episode in a run: it ends here
            if role is None:
                break
            if role is Role.SEEKER:
                directives = _call(behaviour.directives, episode) or ""
                group = seeker_group
                asked = prompt_tokens(seeker_view(seeker.protocol, episode, directives), seeker.section.model, carried)
                attempts = 1 + self._retries(seeker, behaviour) if self.replies.retries else 1
                if attempts > 1:  # the retries carry a reminder after the directives
                    reminder = "\n\n" + self._role_break(seeker, behaviour).reminder_for(card.language)
                    retry = prompt_tokens(seeker_view(seeker.protocol, episode, directives + reminder), seeker.section.model, carried)
                    asked += retry * (attempts - 1)
            else:
                group, attempts = supporter_group, 1
                asked = prompt_tokens(supporter_view(seeker.protocol, episode, supporter.system_prompt), supporter.model, carried)
            reply = self.replies.length(group)
            tallies[group].add(Tally(attempts, asked, reply * attempts))
            carried += math.ceil(reply)
            turn = episode.add(role, "", completion_tokens=math.ceil(reply))
            _call(behaviour.on_turn, episode, turn)
        transcript = [(t.role.value, t.text) for t in episode.turns]
        self._judge(tallies, episode, transcript)
        return dict(tallies)

    def _ended(self, episode: Episode) -> bool:
        """Whether the run's detectors end the episode here; a persona asking to end is not followed (the bound stays a bound)."""
        parts = self.termination.parts if isinstance(self.termination, AnyOf) else (self.termination,)
        return any(_call(d.check, episode) is not None for d in parts)

    def _retries(self, seeker: Seeker, behaviour: SeekerBehaviour) -> int:
        """The retries a seeker turn may take, as ``Environment._keep_in_role`` resolves them."""
        own = getattr(behaviour, "role_break", None)
        retries = own.retries if own is not None else None
        if retries is None:
            retries = self._role_breaks[seeker.label].retries
        return DEFAULT_ROLE_BREAK_RETRIES if retries is None else retries

    def _role_break(self, seeker: Seeker, behaviour: SeekerBehaviour) -> RoleBreakRule:
        own: RoleBreakRule | None = getattr(behaviour, "role_break", None)
        return own or self._role_breaks[seeker.label]

    def _judge(self, tallies: Tallies, episode: Episode, transcript: list[tuple[str, str]]) -> None:
        """The judge's requests (dimensions x samples x prefixes) and the safety judge's, on the finished transcript."""
        language = episode.card.language
        tokens = [t.completion_tokens if t.generated else 0 for t in episode.turns]
        judge, profile = self.plan.config.judge, self.plan.profile
        if judge is not None and profile is not None:
            prefixes = [(FINAL, len(transcript))]
            if judge.score_every_round:
                prefixes += scored_rounds(transcript)
            reply, dimensions = self.replies.length(("judge", "")), len(profile.keys)
            for _, end in prefixes:
                lines = tuple(transcript[:end])
                if (language, lines) not in self._judge_text:  # the same for every card: the imagined replies have no text
                    self._judge_text[language, lines] = sum(prompt_tokens(profile.messages(dimension, language, lines), judge.model, 0)
                                                            for dimension in profile.keys)
                asked = self._judge_text[language, lines] + dimensions * sum(tokens[:end])
                requests = dimensions * judge.samples
                tallies["judge", ""].add(Tally(requests, asked * judge.samples, reply * requests))
        safety = self.plan.safety
        if safety is not None:
            case = safety_case(transcript, episode.state)
            if case.kind != EXCLUDED:
                samples = safety.section.samples
                asked = prompt_tokens(safety.rubric.messages(case, language, transcript), safety.endpoint.model, sum(tokens))
                tallies["safety", ""].add(Tally(samples, asked * samples, self.replies.length(("safety", "")) * samples))


def _call(method: Callable[..., Any], *args: Any) -> Any:
    """A plugin's answer, ``None`` when it raises: a detector or persona then ends nothing here (a run fails that episode,
    so the paper run only asks more), a turn policy ends the episode."""
    try:
        return method(*args)
    except Exception:  # a plugin's bug: the run records it; the estimate goes on
        return None


def endpoints(plan: RunPlan) -> dict[Group, EndpointConfig]:
    """The endpoint each group's requests go to (its ``max_tokens`` bounds a reply)."""
    out: dict[Group, EndpointConfig] = {("seeker", s.label): s.section for s in plan.seeker_plans()}
    out |= {("supporter", s.name): s for s in plan.config.supporters}
    if plan.config.judge is not None:
        out["judge", ""] = plan.config.judge
    if plan.safety is not None:
        out["safety", ""] = plan.safety.endpoint
    return out


@dataclass(frozen=True)
class Calibration:
    """What a pilot store's finished episodes used, per group: ``Calibration.read(PATH)``.

    ``episodes`` maps each finished episode's key to its groups' usage (``esc_eval.runs.store.usage``, the report's
    reading of a store's tokens); a judge or safety row without token counts (a store from before they were
    recorded) is left out. An episode whose seeker or supporter tokens are unknown (an imported ESC-Eval transcript:
    its file has none) is left out whole, and so is one without a single seeker or supporter request with tokens (one
    imported before their tokens were marked unknown): its usage is not 0, it is not known.
    """

    path: str
    episodes: dict[str, Tallies]
    left_out: int = 0
    """Finished episodes left out: their seeker or supporter tokens are unknown (the dry run's table notes them)."""

    @classmethod
    def read(cls, path: Path) -> Calibration:
        """Raises ``StoreError`` when ``path`` is not an esc-eval store, ``ValueError`` when it has no finished episode
        whose seeker and supporter usage is known."""
        from esc_eval.runs.store import Store
        from esc_eval.runs.store.usage import usage

        with Store.open(path, readonly=True) as reader:
            done = {e.key for e in reader.episodes(status="done")}
            rows = usage(reader)
        episodes: dict[str, Tallies] = {key: defaultdict(Tally) for key in done}
        unknown, counted = set(), set()
        for row in rows:
            if row.episode_key in done and row.role in ("seeker", "supporter"):
                if row.unknown:
                    unknown.add(row.episode_key)
                if row.requests:
                    counted.add(row.episode_key)
            if row.episode_key in done and row.requests:
                name = row.seeker if row.role == "seeker" else row.supporter if row.role == "supporter" else ""
                episodes[row.episode_key][row.role, name].add(Tally(row.requests, row.input, row.output))
        if not done:
            raise ValueError(f"{path}: no finished episode to calibrate from")
        known = {key: dict(t) for key, t in episodes.items() if key in counted and key not in unknown}
        if not known:
            raise ValueError(f"{path}: none of its {len(done)} finished episodes has known seeker and supporter token counts "
                             "(imported transcripts carry none) to calibrate from; use a pilot run's store")
        return cls(str(path), known, len(done) - len(known))

    @functools.cached_property
    def replies(self) -> dict[Group, float]:
        """The mean reply length (tokens) of each group's requests and, under ``(role, "*")``, of each role's."""
        return {group: t.output / t.requests for group, t in self.totals().items() if t.requests}

    def totals(self, keys: Iterable[str] | None = None) -> Tallies:
        """Usage per group over the episodes ``keys`` (default: all), and per role under ``(role, "*")``."""
        out: Tallies = {}
        for key in self.episodes if keys is None else keys:
            for group, tally in self.episodes[key].items():
                out.setdefault(group, Tally()).add(tally)
                out.setdefault((group[0], "*"), Tally()).add(tally)
        return out

    def reply(self, group: Group) -> float | None:
        """The mean reply length (tokens) of the group's requests, else of its role's; ``None`` when the pilot made none."""
        found = self.replies.get(group)
        return self.replies.get((group[0], "*")) if found is None else found


@dataclass(frozen=True)
class Resumed:
    """What a resume of a store would leave out of the plan: ``Resumed.read(plan, PATH)``, as ``--resume`` finds it.

    ``statuses`` maps each stored episode's key to its status; a planned episode whose status is in ``skips`` (``done``,
    and ``failed`` unless ``retry_failed``) is not played again, so not estimated. ``rescoring`` counts the finished
    episodes whose judge scores or safety judgements a resume asks for (again): those requests are not in the estimate.
    """

    path: str
    statuses: dict[str, str]
    skips: frozenset[str]
    rescoring: int = 0

    @classmethod
    def read(cls, plan: RunPlan, path: Path, *, retry_failed: bool = False, allow_config_change: bool = False) -> Resumed:
        """The store at ``path``, checked and read as a resume opens it, read-only (nothing is written).

        Raises ``StoreError`` (no store, not a store) and ``ConfigError`` (another plan's store, unless
        ``allow_config_change``): the errors ``--resume`` gives.
        """
        from esc_eval.runs.execution.resume import check_run_store, resume_skips
        from esc_eval.runs.store import Store
        from esc_eval.runs.store import safety as safety_records

        check_run_store(plan, path, resume=True, allow_config_change=allow_config_change)
        with Store.open(path, readonly=True) as reader:
            statuses = reader.statuses()
            rescoring = {row.key for row in reader.unscored(plan.profile.keys, include_failed=retry_failed)} if plan.profile else set()
            if plan.safety is not None:
                rescoring |= {row["key"] for row in safety_records.unjudged(reader, plan.safety.section.samples, include_failed=retry_failed)}
        return cls(str(path), statuses, resume_skips(retry_failed), len(rescoring))

    def left_out(self, key: str) -> str | None:
        """The stored status of a planned episode a resume does not play (``done``, ``failed``), else ``None``."""
        status = self.statuses.get(key)
        return status if status in self.skips else None


@dataclass
class Estimate:
    """A plan's requests, tokens and costs per group: expected and at the upper bound (``to_json``: the dry run's JSON)."""

    episodes: int
    expected: Tallies
    maximum: Tallies
    prices: dict[Group, Price | None]
    calibrated: str | None = None
    """The pilot store's path, or ``None``: replies at ``DEFAULT_REPLY_FRACTION`` of ``max_tokens``."""
    notes: list[str] = field(default_factory=list)
    resumed: Resumed | None = None
    """The store a resume continues, or ``None`` (the whole plan): then ``episodes`` are those it would play."""
    left_out: dict[str, int] = field(default_factory=dict)
    """With ``resumed``: planned episodes left out, by stored status (``done``; ``failed`` without ``retry_failed``)."""

    def cost(self, tallies: Tallies, role: str | None = None) -> float | None:
        """USD of ``role``'s groups (default: all); ``None`` when one of them that sends requests has no price."""
        total = 0.0
        for group, tally in tallies.items():
            if role is not None and group[0] != role or not tally.requests:
                continue
            price = self.prices.get(group)
            if price is None:
                return None
            total += price.usd(tally.input, tally.output)
        return total

    @property
    def cost_usd(self) -> float | None:
        return self.cost(self.expected)

    @property
    def cost_usd_max(self) -> float | None:
        return self.cost(self.maximum)

    def to_json(self) -> dict[str, Any]:
        def roles(tallies: Tallies, what: Callable[[Tally], float]) -> dict[str, int]:
            return {role: round(sum(what(t) for g, t in tallies.items() if g[0] == role)) for role in ROLES}

        def tokens(tallies: Tallies) -> dict[str, dict[str, int]]:
            inputs, outputs = roles(tallies, lambda t: t.input), roles(tallies, lambda t: t.output)
            return {role: {"input": inputs[role], "output": outputs[role]} for role in ROLES}

        def usd(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        resumed = {} if self.resumed is None else {
            "resumed_from": self.resumed.path, "already_done": self.left_out.get("done", 0),
            "failed_left_out": self.left_out.get("failed", 0), "rescoring": self.resumed.rescoring,
        }
        return {
            "episodes": self.episodes,
            "requests": roles(self.expected, lambda t: t.requests),
            "tokens": tokens(self.expected),
            "cost_usd": usd(self.cost_usd),
            "cost_usd_max": usd(self.cost_usd_max),
            "requests_max": roles(self.maximum, lambda t: t.requests),
            "tokens_max": tokens(self.maximum),
            "by_role": {role: {"cost_usd": usd(self.cost(self.expected, role)), "cost_usd_max": usd(self.cost(self.maximum, role))}
                        for role in ROLES},
            "calibrated_from": self.calibrated,
            "reply_fraction": None if self.calibrated else DEFAULT_REPLY_FRACTION,
            "notes": list(self.notes),
        } | resumed


def estimate(plan: RunPlan, calibration: Calibration | None = None, resumed: Resumed | None = None) -> Estimate:
    """The plan's requests, tokens and costs: the upper bound, and the expectation (calibrated by a pilot when given).

    With ``resumed``, of the planned episodes a resume of that store would play; the pilot's episodes the resume leaves
    out still calibrate (a store can calibrate its own resume).
    """
    limits = endpoints(plan)
    prices = Prices.of(plan.config)
    at_max = Simulator(plan, Replies(lambda g: limits[g].max_tokens, retries=True))

    def default(group: Group) -> float:
        return DEFAULT_REPLY_FRACTION * limits[group].max_tokens

    def measured(group: Group) -> float:
        found = calibration.reply(group) if calibration is not None else None
        return default(group) if found is None else found

    expecting = Simulator(plan, Replies(measured))
    maximum: Tallies = {}
    expected: Tallies = {}
    matched: Tallies = {}
    matched_keys: list[str] = []
    episodes = 0
    pilot = calibration.episodes if calibration is not None else {}
    left_out: dict[str, int] = {}
    for planned, card in plan.episodes():
        status = resumed.left_out(planned.key) if resumed is not None else None
        if status is not None:
            left_out[status] = left_out.get(status, 0) + 1
            if planned.key not in pilot:
                continue
        else:
            episodes += 1
            _merge(maximum, at_max.episode(planned, card))
        tallies = expecting.episode(planned, card)
        if status is None:
            _merge(expected, tallies)
        if planned.key in pilot:
            _merge(matched, tallies)
            matched_keys.append(planned.key)
    result = Estimate(episodes, expected, maximum, {(role, name): prices.request(role, seeker=name, supporter=name) for role, name in limits},
                      resumed=resumed, left_out=left_out)
    if calibration is not None:
        result.calibrated = calibration.path
        result.expected = _calibrated(expected, matched if matched_keys else expected, calibration,
                                      matched_keys or None, 1.0 if matched_keys else len(calibration.episodes) / max(episodes, 1))
        if calibration.left_out:
            result.notes.append(f"{calibration.left_out} of the pilot's finished episodes left out: their seeker or supporter "
                                "tokens are unknown (imported transcripts)")
        if not matched_keys:
            result.notes.append("the pilot's episodes are not in this plan: its usage per episode is compared with this plan's")
        if len(calibration.episodes) < PILOT_SHARE * episodes:
            result.notes.append(f"the pilot finished {len(calibration.episodes)} episodes, under {PILOT_SHARE:.0%} of the plan's {episodes}: "
                                "the expectation is rougher")
    return result


def _calibrated(expected: Tallies, model: Tallies, calibration: Calibration, keys: list[str] | None, share: float) -> Tallies:
    """``expected`` scaled per group by what the pilot used over what the model says for the same episodes.

    ``model`` is the paper run of the pilot's episodes (or of the whole plan, then ``share`` is pilot
    episodes per planned episode). A group the pilot lacks takes its role's ratio; a role it lacks stays as modelled.
    """
    used = calibration.totals(keys)
    modelled: Tallies = {}
    for group, tally in model.items():
        modelled.setdefault(group, Tally()).add(tally, share)
        modelled.setdefault((group[0], "*"), Tally()).add(tally, share)
    out: Tallies = {}
    for group, tally in expected.items():
        for key in (group, (group[0], "*")):
            real, paper = used.get(key), modelled.get(key)
            if real is not None and paper is not None and real.requests and paper.requests:
                out[group] = Tally(tally.requests * real.requests / paper.requests,
                                   tally.input * real.input / paper.input if paper.input else tally.input,
                                   tally.output * real.output / paper.output if paper.output else tally.output)
                break
        else:
            out[group] = tally
    return out


def expected_episode_cost(plan: RunPlan, calibration: Calibration | None = None) -> float | None:
    """The expected USD of one episode of ``plan`` (its whole expected cost over its episodes), ``None`` without prices.

    What a budget admits an episode against before any has finished (``--cost-limit``).
    """
    result = estimate(plan, calibration)
    cost = result.cost_usd
    return None if cost is None or not result.episodes else cost / result.episodes
