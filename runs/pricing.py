"""Prices: what one request costs, and which price each of a run's endpoints has (docs/cost.md).

A ``price`` table on an endpoint section gives USD per million input and output tokens. Every
place that turns tokens into money (the report, the live spend and ``--cost-limit``, ``--dry-run``)
asks this module, so the formula is written once: ``usd = (input × price.input + output × price.output) / 1e6``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esc_eval.agents.backends.endpoint import EndpointConfig
    from esc_eval.runs.config import Config

ROLES = ("seeker", "supporter", "judge", "safety")
"""Who makes requests in a run: every seeker counts under ``seeker``, the safety judge under ``safety``."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float

    def usd(self, input_tokens: float, output_tokens: float) -> float:
        """What a request (or a sum of them) costs: the one formula, so report, spend and estimate always agree."""
        return (input_tokens * self.input + output_tokens * self.output) / 1e6

    @classmethod
    def of(cls, endpoint: EndpointConfig | None) -> Price | None:
        """An endpoint's price; ``None`` when it has none (its cost is unknown, never 0)."""
        if endpoint is None or not endpoint.price:
            return None
        return cls(float(endpoint.price["input"]), float(endpoint.price["output"]))


@dataclass(frozen=True)
class Prices:
    """The price of each endpoint a run sends requests to, by what the store records.

    ``seekers`` is keyed by the seeker's label (``episodes.seeker``; "" for stores made before seekers
    were named: the run's one seeker), ``supporters`` by supporter name.
    """

    seekers: dict[str, Price | None]
    supporters: dict[str, Price | None]
    judge: Price | None
    safety: Price | None

    @classmethod
    def of(cls, config: Config) -> Prices:
        """The prices ``config`` gives; the safety judge without its own takes the judge's when it uses the judge's model."""
        seekers = {s.label: Price.of(s) for s in config.seeker_sections}
        seekers.setdefault("", Price.of(config.seeker))
        safety = config.safety.endpoint(config.judge) if config.safety is not None else config.judge
        return cls(seekers, {s.name: Price.of(s) for s in config.supporters}, Price.of(config.judge), Price.of(safety))

    def seeker(self, label: str) -> Price | None:
        """A seeker's price by label; an unknown label (a store from before named seekers) takes the run's one seeker's."""
        return self.seekers.get(label, self.seekers.get(""))

    def supporter(self, name: str) -> Price | None:
        return self.supporters.get(name)

    def request(self, role: str, *, seeker: str = "", supporter: str = "") -> Price | None:
        """The price of one request by ``role`` (``ROLES``) in an episode of ``seeker`` (label) and ``supporter`` (name).

        The one place a request finds its endpoint's price: the report, the live spend and ``--dry-run`` ask it.
        """
        if role == "seeker":
            return self.seeker(seeker)
        if role == "supporter":
            return self.supporter(supporter)
        return self.judge if role == "judge" else self.safety if role == "safety" else None

    @property
    def any(self) -> bool:
        """Whether any endpoint has a price (a report without any shows no costs at all)."""
        return any(p is not None for p in (*self.seekers.values(), *self.supporters.values(), self.judge, self.safety))


def usd_text(amount: float | None) -> str:
    """Dollars as every display shows them (report, monitor, ``--dry-run``, the cost-limit message): cents from a dollar
    up, four decimals below (a test run's fractions of a cent), ``$0`` for nothing, ``–`` when unknown (no price).

    >>> usd_text(1234.5), usd_text(0.01234), usd_text(0.0), usd_text(None)
    ('$1,234.50', '$0.0123', '$0', '–')
    """
    if amount is None:
        return "–"
    return "$0" if amount == 0 else f"${amount:.4f}" if abs(amount) < 1 else f"${amount:,.2f}"


def unpriced(config: Config, *, safety: bool = False) -> list[str]:
    """The sections (as messages name them) whose endpoint has no price: a cost limit cannot count their spend.

    ``safety``: the run plans a safety judge (``[safety]``, or a risk persona without it).
    """
    missing = [where for where, endpoint in config.endpoints() if Price.of(endpoint) is None]
    if safety and Prices.of(config).safety is None and "[judge]" not in missing:
        missing.append("[safety]")
    return missing
