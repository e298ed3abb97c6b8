"""What a run has spent so far and expects to spend: the live side of docs/cost.md (the monitor, ``--cost-limit``).

``Spend`` prices every turn, judge score and safety judgement as it arrives (``Price.usd``, the one
formula; cached requests cost nothing), so the monitor can show spend and a projection, and the runner
can ask ``admits()`` before each episode: the spend so far (with what earlier attempts spent) plus the
expected cost still to come of the episodes in flight, plus the episode to admit, must stay under the
limit. An episode's expected cost is the mean cost of the episodes this run has *settled* (ended and,
with a judge, every score and safety judgement in), before any has: what ``--dry-run`` expects. It holds
nothing per settled episode: its size is bounded by the episodes open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from esc_eval.agents.messages import EpisodeEnded, TurnTaken
from esc_eval.runs.pricing import Price, Prices
from esc_eval.runs.store.reader import Reader
from esc_eval.runs.store.records import PlannedEpisode, Tokens
from esc_eval.runs.store.usage import usage

if TYPE_CHECKING:
    from esc_eval.runs.execution.plan import RunPlan

A_PRIORI_EPISODES = 24
"""About how many episodes the a priori estimate plays on paper: the first cards' (every seeker, persona and supporter
on each; at least one card). The whole plan would take as long as ``--dry-run`` at the start of every run."""


@dataclass
class Spend:
    """Money spent by this process's run, with what earlier attempts of the store spent (``prior``).

    Args:
        prices: every endpoint's price (``Prices.of(config)``); a request of an endpoint without one, or with
            unknown tokens, adds nothing (a limit needs every price, ``unpriced``; the monitor's spend is of the priced).
        planned: episode key -> its plan entry, so a turn is priced at its own seeker's or supporter's price.
        prior: USD the store's earlier attempts spent (``--resume``).
        a_priori: the expected cost of one episode before any has settled.
        final_scores: final judge scores each ended, non-failed episode gets (dimensions x samples; 0: no judge).
        every_round: the judge also scores each round's prefix (``score_every_round``): as many again per round
            that ended before the episode did.
        safety_samples: safety judgements each ended, non-failed episode gets (0: no safety judge).
    """

    prices: Prices
    planned: Mapping[str, PlannedEpisode] = field(default_factory=dict)
    prior: float = 0.0
    a_priori: float = 0.0
    final_scores: int = 0
    every_round: bool = False
    safety_samples: int = 0
    limit: float | None = None
    """The run's cost limit (USD), shown by the monitor; the runner admits against it."""
    spent: float = 0.0
    """USD this attempt spent (``total`` adds ``prior``)."""
    saved: float = 0.0
    """USD cache hits would have cost."""
    on_settle: Callable[[], None] | None = None
    """Called whenever an episode settles: the expected cost changed (the runner waits on it to admit again)."""
    _open: dict[str, float] = field(default_factory=dict, repr=False)
    """Admitted, unsettled episode -> its cost so far (bounded by the episodes in flight and awaiting the judge)."""
    _waiting: dict[str, list[int]] = field(default_factory=dict, repr=False)
    """Ended episode -> [judge scores, safety judgements] still to come."""
    _settled: int = 0
    _settled_usd: float = 0.0

    @property
    def total(self) -> float:
        return self.prior + self.spent

    @property
    def open(self) -> int:
        """Admitted episodes whose cost is not complete yet (in flight, or ended and awaiting the judge)."""
        return len(self._open)

    @property
    def settled(self) -> int:
        """Episodes of this attempt whose cost is complete."""
        return self._settled

    @property
    def expected(self) -> float:
        """The expected cost of one episode: the mean over settled ones, else ``a_priori``."""
        return self._settled_usd / self._settled if self._settled else self.a_priori

    def committed(self) -> float:
        """Spend so far plus what the open episodes are still expected to cost (each at least ``expected`` in all)."""
        expected = self.expected
        return self.total + sum(max(0.0, expected - cost) for cost in self._open.values())

    def admits(self, limit: float) -> bool:
        """Whether one more episode fits under ``limit`` with everything in flight."""
        return self.committed() + self.expected < limit

    def admit(self, key: str) -> None:
        self._open[key] = 0.0

    def drop(self, key: str) -> None:
        """Episode ``key`` was cancelled or raised before it ended: what it spent stays spent, it settles nothing."""
        if self._open.pop(key, None) is not None:
            self._waiting.pop(key, None)
            if self.on_settle is not None:
                self.on_settle()

    def drop_open(self) -> None:
        """``drop`` every open episode (the runner gave up waiting for them to settle)."""
        for key in list(self._open):
            self.drop(key)

    # -- what arrives ---------------------------------------------------------------------

    def turn(self, message: TurnTaken) -> None:
        planned = self.planned.get(message.episode_key)
        price = self.prices.request(message.role, seeker=planned.seeker if planned else "",
                                    supporter=planned.supporter if planned else "")
        self._add(message.episode_key, price, message.prompt_tokens, message.completion_tokens, message.cached)

    def judged(self, key: str, tokens: Tokens) -> None:
        """A judge score of episode ``key``, failed ones included."""
        self._add(key, self.prices.judge, tokens.prompt_tokens, tokens.completion_tokens, bool(tokens.cached))
        self._arrived(key, 0)

    def safety(self, key: str, tokens: Tokens, *, excluded: bool) -> None:
        """A safety judgement (``excluded``: one record, no request, and no more to come for the episode)."""
        if not excluded:
            self._add(key, self.prices.safety, tokens.prompt_tokens, tokens.completion_tokens, bool(tokens.cached))
        self._arrived(key, 1, everything=excluded)

    def ended(self, message: EpisodeEnded) -> None:
        """Episode ``message.episode_key`` ended: it settles once the judge and safety judge have answered on it."""
        key = message.episode_key
        if key not in self._open:
            return
        if message.outcome == "failed":  # failed episodes are never judged
            self._waiting[key] = [0, 0]
        else:
            rounds = 0
            if self.every_round:  # imported here: the monitor reads spend without loading the agents' runtime
                from esc_eval.agents.judge.agent import scored_rounds

                rounds = len(scored_rounds(message.transcript))
            self._waiting[key] = [self.final_scores * (1 + rounds), self.safety_samples]
        self._settle(key)

    def _add(self, key: str, price: Price | None, prompt: int | None, completion: int | None, cached: bool) -> None:
        if price is None or prompt is None or completion is None:
            return
        usd = price.usd(prompt, completion)
        if cached:
            self.saved += usd
            return
        self.spent += usd
        if key in self._open:
            self._open[key] += usd

    def _arrived(self, key: str, which: int, *, everything: bool = False) -> None:
        left = self._waiting.get(key)
        if left is None:
            return
        left[which] = 0 if everything else max(0, left[which] - 1)
        self._settle(key)

    def _settle(self, key: str) -> None:
        if any(self._waiting[key]):
            return
        del self._waiting[key]
        self._settled_usd += self._open.pop(key)
        self._settled += 1
        if self.on_settle is not None:
            self.on_settle()

    def projection(self, not_admitted: int) -> float | None:
        """The whole plan's cost: spend so far, what the open episodes still cost, and ``not_admitted`` more episodes.

        ``None`` while no episode has settled and there is no a priori estimate (a run without a cost limit).
        """
        if not self._settled and not self.a_priori:
            return None
        return self.committed() + self.expected * not_admitted

    @classmethod
    def of(cls, plan: RunPlan, planned: Mapping[str, PlannedEpisode], *, store: Reader | None = None, ended: int = 0) -> Spend:
        """The spend of a run of ``plan`` (``planned``: its episodes by key) into ``store``, where earlier attempts
        ended ``ended`` episodes and spent ``prior`` (read only when some endpoint has a price).

        With a cost limit, an episode is expected a priori to cost what the store's ended episodes cost on average
        (``prior / ended``), else what ``--dry-run`` expects of it (``estimate.expected_episode_cost``: the episodes
        of the plan's first cards played on paper, ``A_PRIORI_EPISODES`` or so, replies at a fraction of ``max_tokens``).
        """
        config = plan.config
        prices = Prices.of(config)
        prior = stored_spend(store, prices) if store is not None and prices.any else 0.0
        final_scores = len(plan.profile.keys) * config.judge.samples if plan.profile is not None and config.judge is not None else 0
        a_priori = 0.0
        if config.run.cost_limit is not None and ended and prior:
            a_priori = prior / ended
        elif config.run.cost_limit is not None:
            from esc_eval.runs.execution.estimate import expected_episode_cost

            per_card = sum(len(seeker.personas) for seeker in plan.seeker_plans()) * len(config.supporters)
            cards = plan.cards[:max(1, A_PRIORI_EPISODES // max(per_card, 1))]
            sample = replace(plan, cards=cards, config=replace(config, run=replace(config.run, repeats=1)))
            a_priori = expected_episode_cost(sample) or 0.0
        return cls(prices, planned, prior=prior, a_priori=a_priori, final_scores=final_scores,
                   every_round=config.judge is not None and config.judge.score_every_round,
                   safety_samples=plan.safety.section.samples if plan.safety is not None else 0, limit=config.run.cost_limit)


def stored_spend(reader: Reader, prices: Prices) -> float:
    """USD a store's requests cost at ``prices`` (``--resume`` counts it; ``esc-eval monitor STORE`` shows it).

    Cache hits cost nothing; rows with unknown tokens and endpoints without a price add nothing.
    """
    usd = 0.0
    for row in usage(reader):
        price = prices.request(row.role, seeker=row.seeker, supporter=row.supporter)
        if price is not None and not row.cached:
            usd += price.usd(row.input, row.output)
    return usd

