"""The role card: a short profile of a person in distress that a seeker plays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("en", "zh")
CATEGORIES = ("family_life", "work_study", "society_other")


class CardError(ValueError):
    """A card file or card is invalid; the message names the file, the card and the field.

    ``index`` counts from 0 (a list index); the message counts from 1, as line numbers do.
    """

    def __init__(self, path: str, message: str, *, index: int | None = None, field: str | None = None):
        where = path
        if index is not None:
            where += f": card {index + 1}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.index, self.field = path, index, field


@dataclass(frozen=True, slots=True)
class RoleCard:
    """One seeker profile.

    Attributes:
        id: stable identifier from the source file (ESC-Eval's numeric ``id`` as text).
        language: ``"en"`` or ``"zh"``.
        profile: the card text the seeker prompt embeds verbatim (ESC-Eval's ``base``).
        category: one of ``CATEGORIES``.
        source: the dataset the card came from (ESConv, PsyQA, ...).
        annotations: anything else the file carried (e.g. ESC-Eval's ``base_biaozhu``).
    """

    id: str
    language: str
    profile: str
    category: str
    source: str
    annotations: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
