"""Who the seeker is: role cards, seeker protocols and their loaders.

Public API:
    RoleCard, Category, CardError          -- the card model and its validation error
    load_cards, builtin_cards              -- read card files (ESC-Eval JSON, JSONL, YAML)
    SeekerProtocol, load_protocol          -- the prompts each side sees, as data
"""

from roles.cards import CATEGORIES, LANGUAGES, CardError, RoleCard
from roles.loaders import builtin_cards, load_cards
from roles.templates import ProtocolError, SeekerProtocol, load_protocol

__all__ = [
    "CATEGORIES",
    "LANGUAGES",
    "CardError",
    "ProtocolError",
    "RoleCard",
    "SeekerProtocol",
    "builtin_cards",
    "load_cards",
    "load_protocol",
]
