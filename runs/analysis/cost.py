"""What a store's requests cost: its tokens (``esc_eval.runs.store.usage``) times its endpoints' prices (docs/cost.md).

Prices come from the config the store records (its meta ``config``, which a ``--resume`` replaces), through
``esc_eval.runs.pricing``: a price changed for a resume applies to the whole store, the requests made
before it included. A request made from the cache (``cached``) costs nothing: what it would have cost is
``cached_usd_saved``. The cost of requests to an endpoint without a price is unknown: ``None``, never 0,
and so is every sum it is part of; a store whose config has no price at all has no costs, only tokens.

Example::

    with Store.open("run.sqlite", readonly=True) as store:
        cost = store_cost(store)
    print(cost.data()["total_usd"], cost.data()["tokens"]["supporter"])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from esc_eval.runs.pricing import ROLES, Prices, usd_text
from esc_eval.runs.store.usage import Usage, usage

if TYPE_CHECKING:
    from esc_eval.runs.analysis.leaderboard import Report
    from esc_eval.runs.store import EpisodeRecord, Store


def _add(total: float | None, usd: float | None) -> float | None:
    """A sum with an unknown part is unknown."""
    return None if total is None or usd is None else total + usd


@dataclass
class Tally:
    """Tokens and money of some requests: ``usd`` ``None`` once one of them has no price."""

    input: int = 0
    output: int = 0
    usd: float | None = 0.0

    def add(self, input: int, output: int, usd: float | None) -> None:
        self.input, self.output, self.usd = self.input + input, self.output + output, _add(self.usd, usd)


@dataclass(frozen=True)
class Cost:
    """A store's (or a report's episodes') tokens and costs in USD; ``None`` where a price is missing.

    ``tokens`` and the costs are those of the requests sent (cache hits excluded, their would-be cost
    is ``cached_usd_saved``). ``unknown`` counts, per role, answered requests whose tokens the store
    does not know (judge calls in stores made before they were recorded, imported ESC-Eval turns): their tokens are in no sum
    and every cost they are part of is unknown (``None``).
    ``episodes`` maps each episode to its cost (all roles) and ``supporter`` to its supporter's own.
    """

    priced: bool
    roles: Mapping[str, Tally]
    supporters: Mapping[str, Tally]
    cached_usd_saved: float | None
    estimated: bool
    unknown: Mapping[str, int]
    episodes: Mapping[str, Tally] = field(default_factory=dict)
    supporter_of_episode: Mapping[str, Tally] = field(default_factory=dict)

    @property
    def total_usd(self) -> float | None:
        total: float | None = 0.0
        for tally in self.roles.values():
            total = _add(total, tally.usd)
        return total if self.priced else None

    def usd(self, tally: Tally | None) -> float | None:
        """A tally's cost as shown: ``None`` without any price in the store, 0 for no requests."""
        return None if not self.priced else 0.0 if tally is None else tally.usd

    def data(self) -> dict[str, Any]:
        """The report's JSON ``cost`` object, exactly (docs/cost.md)."""
        return {
            "total_usd": self.total_usd,
            "by_role": {role: self.usd(tally) for role, tally in self.roles.items()},
            "by_supporter": {name: self.usd(tally) for name, tally in self.supporters.items()},
            "tokens": {role: {"input": tally.input, "output": tally.output} for role, tally in self.roles.items()},
            "cached_usd_saved": self.cached_usd_saved if self.priced else None,
            "estimated": self.estimated,
        }

    def group(self, keys: Iterable[str]) -> GroupCost:
        """The cost of some episodes (a leaderboard row): their supporter's own and, per episode that started, all roles'."""
        own_input = own_output = started = 0
        own_usd: float | None = 0.0
        whole_usd: float | None = 0.0
        mine_of, every_of = self.supporter_of_episode.get, self.episodes.get
        for key in keys:    # Tally.add's sums inlined: a large store's six reports group every episode (docs/performance.md)
            mine, every = mine_of(key), every_of(key)
            if mine is not None:
                own_input, own_output = own_input + mine.input, own_output + mine.output
                own_usd = None if own_usd is None or mine.usd is None else own_usd + mine.usd
            if every is not None:
                started += 1
                whole_usd = None if whole_usd is None or every.usd is None else whole_usd + every.usd
        per_episode = None if whole_usd is None or not started else whole_usd / started
        return GroupCost(self.usd(Tally(own_input, own_output, own_usd)), per_episode if self.priced else None, own_input, own_output)


@dataclass(frozen=True)
class GroupCost:
    """A leaderboard row's cost: ``supporter_usd`` its supporter's calls, ``per_episode_usd`` every role's per episode."""

    supporter_usd: float | None
    per_episode_usd: float | None
    supporter_input: int
    supporter_output: int

    def data(self) -> dict[str, Any]:
        return {"supporter_usd": self.supporter_usd, "per_episode_usd": self.per_episode_usd,
                "supporter_tokens": {"input": self.supporter_input, "output": self.supporter_output}}


def recorded_prices(store: Store) -> Prices:
    """The prices of the config the store records (``Prices.of``); none for a store without one (an import)."""
    from esc_eval.runs.config import Config
    from esc_eval.runs.config_sections import CardsSection, JudgeSection, RunSection, SafetySection, SeekerSection, SupporterSection

    raw = store.meta("config") or {}

    def section(cls: type[Any], data: Mapping[str, Any] | None) -> Any:  # only what finds a price: names, models, prices
        known = {f.name for f in fields(cls)} & {"name", "backend", "base_url", "model", "price"}
        return cls(**{k: v for k, v in (data or {}).items() if k in known and v is not None})

    seekers = tuple(section(SeekerSection, s) for s in raw.get("seekers") or ())
    seeker = seekers[0] if seekers else section(SeekerSection, raw.get("seeker"))
    judge = section(JudgeSection, raw["judge"]) if raw.get("judge") else None
    safety = section(SafetySection, raw["safety"]) if raw.get("safety") else None
    supporters = tuple(section(SupporterSection, s) for s in raw.get("supporters") or ())
    return Prices.of(Config(str(store.path), RunSection(), CardsSection(), seeker, supporters, judge, seekers, safety))


def cost_of(rows: Iterable[Usage], prices: Prices, supporters: Sequence[str] = ()) -> Cost:
    """``rows`` priced; ``supporters`` are listed in ``by_supporter`` even without requests."""
    roles = {role: Tally() for role in ROLES}
    by_supporter = {name: Tally() for name in supporters}
    episodes: dict[str, Tally] = defaultdict(Tally)
    own: dict[str, Tally] = defaultdict(Tally)
    saved: float | None = 0.0
    estimated = False
    unknown: dict[str, int] = defaultdict(int)
    for row in rows:
        price = prices.request(row.role, seeker=row.seeker, supporter=row.supporter)
        usd = price.usd(row.input, row.output) if price is not None and not row.unknown else None
        estimated |= row.estimated
        if row.unknown:
            unknown[row.role] += row.unknown
        if row.cached:
            saved = _add(saved, usd)
            episodes.setdefault(row.episode_key, Tally())   # it started; its cached requests are free
            continue
        for tally in (roles.setdefault(row.role, Tally()), episodes[row.episode_key]):
            tally.add(row.input, row.output, usd)
        if row.role == "supporter":
            for tally in (by_supporter.setdefault(row.supporter, Tally()), own[row.episode_key]):
                tally.add(row.input, row.output, usd)
    return Cost(prices.any, roles, by_supporter, saved, estimated, dict(unknown), dict(episodes), dict(own))


def store_cost(store: Store, episodes: Iterable[EpisodeRecord] | None = None) -> Cost:
    """The cost of ``episodes`` (default: all the store's) at the prices the store records."""
    chosen = list(store.episodes()) if episodes is None else list(episodes)
    keys = {e.key for e in chosen}
    rows = [row for row in usage(store) if row.episode_key in keys]
    return cost_of(rows, recorded_prices(store), list(dict.fromkeys(e.supporter for e in chosen)))


@dataclass(frozen=True)
class ReportCost:
    """A report's cost: the whole (``cost``) and each row's (``rows``, by the row's group values)."""

    cost: Cost
    rows: Mapping[tuple[str, ...], GroupCost]

    def row(self, group: Mapping[str, str]) -> GroupCost | None:
        return self.rows.get(tuple(group.values()))


def report_cost(store: Store, report: Report, *, supporter: str | None = None, language: str | None = None,
                episodes: Sequence[EpisodeRecord] | None = None, cost: Cost | None = None) -> ReportCost:
    """The cost of the episodes ``report`` covers (the same ``supporter``/``language`` filter), per row as it groups them.

    ``episodes``: the store's, when the caller has read them; ``cost``: their ``store_cost`` when it is already known
    (several reports of one store share it: the viewer's facets).
    """
    from esc_eval.runs.analysis.leaderboard import seeker_label

    only = seeker_label(store)
    chosen = [e for e in (store.episodes() if episodes is None else episodes)
              if (supporter is None or e.supporter == supporter) and (language is None or e.language == language)]
    cost = store_cost(store, chosen) if cost is None else cost
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    columns = [[e.seeker or only for e in chosen] if c == "seeker" else list(map(str, map(attrgetter(c), chosen))) for c in report.by]
    for group, e in zip(zip(*columns) if columns else repeat(()), chosen):     # column by column: the viewer groups a large store six times
        groups[group].append(e.key)
    return ReportCost(cost, {group: cost.group(keys) for group, keys in groups.items()})


def cost_lines(cost: Cost) -> list[str]:
    """The cost section under a leaderboard: totals, per role and supporter, tokens, cache savings, what is unknown."""
    lines = []
    data = cost.data()
    if cost.priced:
        roles = " · ".join(f"{role} {usd_text(usd)}" for role, usd in data["by_role"].items())
        lines.append(f"cost (USD, at the prices of the store's config): total {usd_text(data['total_usd'])} · {roles}")
        lines.append("Supporter $: the row's supporter calls; $ / episode: every role's cost per episode that started")
        if data["by_supporter"]:
            lines.append("supporters' own calls: " + " · ".join(f"{n} {usd_text(usd)}" for n, usd in data["by_supporter"].items()))
        if data["cached_usd_saved"] != 0:
            lines.append(f"cache hits (free) would have cost {usd_text(data['cached_usd_saved'])}")
        if any(usd is None for usd in (*data["by_role"].values(), *data["by_supporter"].values())):
            lines.append("–: unknown (an endpoint without a price, or requests with unknown tokens; docs/cost.md)")
    else:
        lines.append("no prices in the store's config: tokens only (add price = { input = USD, output = USD }; docs/cost.md)")
    tokens = " · ".join(f"{role} {t['input']:,} / {t['output']:,}" for role, t in data["tokens"].items())
    lines.append(f"tokens sent (input / output): {tokens}")
    if cost.estimated:
        lines.append("some token counts are estimated (~4 characters a token): the server reported no usage")
    if cost.unknown:
        lines.append("not counted, tokens unknown: " + ", ".join(f"{n} {role} requests" for role, n in cost.unknown.items()))
    return lines
