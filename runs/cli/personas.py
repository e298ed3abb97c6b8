"""``esc-eval personas``: list seeker personas, show what they ask the seeker round by round, print their schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from esc_eval.runs.cli.errors import BAD_INPUT, UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``personas`` command group."""
    personas = sub.add_parser("personas", help="seeker personas: list them, show what they ask the seeker")
    personas_sub = personas.add_subparsers(required=True, metavar="ACTION")
    plist = personas_sub.add_parser("list", help="built-in personas, files in --dir, and installed plugins")
    plist.add_argument("--dir", type=Path, action="append", default=[], help="also list the persona files in this folder")
    plist.set_defaults(handler=_personas_list)
    show = personas_sub.add_parser("show", help="the seeker prompt a persona compiles into, round by round")
    show.add_argument("name", help="a built-in, plugin or file in --dir, or a .yaml path")
    show.add_argument("--dir", type=Path, action="append", default=[], help="look for NAME.yaml here first")
    show.add_argument("--card-language", choices=("en", "zh"), default="en", help="the sample built-in card's language")
    show.add_argument("--protocol", default="default", help="seeker protocol (built-in name or path)")
    show.add_argument("--rounds", type=int, default=5)
    show.add_argument("--supporter", choices=("empathic", "advice", "neutral"), default="empathic",
                      help="how the imagined supporter answers every round (moves emotion and ending rules)")
    show.set_defaults(handler=_personas_show)
    schema = personas_sub.add_parser("schema", help="print the JSON Schema of a persona file (for YAML editor completion)")
    schema.set_defaults(handler=_personas_schema)


def _personas_list(args: argparse.Namespace) -> int:
    """The table on stdout; a persona plugin reusing a built-in's name is refused on stderr (exit 2), as by ``plugins list``."""
    from esc_eval.environments.behaviours import PERSONAS, list_personas
    from esc_eval.roles.personas import PersonaError

    try:
        found = list_personas(args.dir)
    except PersonaError as exc:
        raise UsageError(str(exc)) from None
    width = max(len(p.name) for p in found)
    source_width = max(len(p.source) for p in found)
    for info in found:
        print(f"{info.name:<{width}}  {info.source:<{source_width}}  {info.description}")
    conflicts = PERSONAS.conflicts()
    for line in conflicts:
        print(f"esc-eval: error: {line}", file=sys.stderr)
    return BAD_INPUT if conflicts else 0


def _personas_schema(args: argparse.Namespace) -> int:
    from esc_eval.roles.persona_schema import persona_schema

    print(json.dumps(persona_schema(), indent=2, ensure_ascii=False))
    return 0


def _personas_show(args: argparse.Namespace) -> int:
    from esc_eval.environments.behaviours import load_behaviour, preview
    from esc_eval.roles.loaders import builtin_cards
    from esc_eval.roles.personas import PersonaError
    from esc_eval.roles.templates import load_protocol

    if args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
    card = builtin_cards(args.card_language)[0]
    protocol = load_protocol(args.protocol)
    try:
        name, behaviour = load_behaviour(args.name, dirs=args.dir)
        persona = getattr(behaviour, "persona", None)
        if persona is not None:
            persona.require([card.language])
        rounds, outcome = preview(behaviour, card, opener=protocol.opener(card.language), rounds=args.rounds,
                                  supporter=args.supporter, persona=name)
    except PersonaError as exc:
        raise UsageError(str(exc)) from None
    source = persona.source if persona is not None else type(behaviour).__module__ + "." + type(behaviour).__qualname__
    print(f"persona {name} ({source})")
    print(f"card {card.id} ({card.language}), protocol {protocol.name}, the supporter answers: {args.supporter}")
    print("\n== seeker system prompt, every round ==")
    print(protocol.seeker_prompt(card))
    for shown in rounds:
        state = shown.state
        facts = f", may share {state['stage']}/{state['facts']} facts" if state.get("stage") is not None else ""
        feeling = f": distress {state['distress']} ({state['emotion']}){facts}" if "distress" in state else ""
        if "risk" in state:
            feeling += (f"; risk {state['risk']} ({state['risk_kind']}), {state['disclosure']} disclosure at round"
                        f" {state['disclosure_round']}{' (this round)' if shown.round == state['disclosure_round'] else ''}")
        print(f"\n== round {shown.round}{feeling} ==")
        print(shown.directives.strip("\n") if shown.directives else "(nothing added)")
    if outcome is not None:
        print(f"\n== the seeker leaves: {outcome.kind.value} ({outcome.reason}) ==")
    return 0
