"""Who the seeker is: role cards, seeker protocols and their loaders.

Public API:
    RoleCard, CardError                    -- the card model and its validation error
    CATEGORIES, LANGUAGES                  -- the card categories and languages we know
    load_cards, builtin_cards              -- read card files (ESC-Eval JSON, JSONL, YAML)
    SeekerProtocol, ProtocolError          -- the prompts each side sees, as data
    load_protocol, builtin_protocols       -- read a protocol by built-in name or path
    Persona, PersonaError, UnknownPersona  -- how a seeker behaves, as data (docs/personas.md)
    load_persona, builtin_personas         -- read a persona by built-in name or path
    Registry, RegistryError                -- named extension points every room declares (docs/plugins.md)
"""

from esc_eval.roles.cards import CATEGORIES, LANGUAGES, CardError, RoleCard
from esc_eval.roles.loaders import builtin_cards, load_cards
from esc_eval.roles.personas import Persona, PersonaError, UnknownPersona, builtin_personas, load_persona
from esc_eval.roles.registry import Registry, RegistryError
from esc_eval.roles.templates import ProtocolError, SeekerProtocol, builtin_protocols, load_protocol

__all__ = [
    "CATEGORIES",
    "LANGUAGES",
    "CardError",
    "Persona",
    "PersonaError",
    "ProtocolError",
    "Registry",
    "RegistryError",
    "RoleCard",
    "SeekerProtocol",
    "UnknownPersona",
    "builtin_cards",
    "builtin_personas",
    "builtin_protocols",
    "load_cards",
    "load_persona",
    "load_protocol",
]
