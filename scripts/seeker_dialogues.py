"""Write synthetic seeker training dialogues on the built-in English cards (``esc-eval seeker train --dialogues``).

The lines are our own (``scripts/seeker_lines.yaml``): a seeker who speaks in the first person,
tells its card's problem a little at a time, pushes back on advice and never plays the listener.
Each dialogue starts with the protocol's opener, as a run does. Deterministic for a seed.

    python scripts/seeker_dialogues.py --out seeker-dialogues.jsonl --per-card 8
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import yaml

from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.templates import load_protocol

LINES = Path(__file__).with_name("seeker_lines.yaml")
KINDS = (("empathy", 5), ("neutral", 2), ("advice", 3))


def dialogue(rng: random.Random, lines: dict[str, Any], card: dict[str, Any], opener: str) -> list[dict[str, str]]:
    """One dialogue: opener, the seeker's opening, then 2-5 rounds of supporter line and seeker reply."""
    said = [{"role": "supporter", "content": opener}, {"role": "seeker", "content": rng.choice(card["openings"])}]
    details = list(card["details"])
    rounds = rng.randint(2, 5)
    for number in range(1, rounds + 1):
        kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        said.append({"role": "supporter", "content": rng.choice(lines["supporter"][kind])})
        seeker = lines["seeker"]
        if number == rounds and not details and rng.random() < 0.6:
            reply = rng.choice(seeker["close"])
        elif kind == "advice":
            reply = rng.choice(seeker["push_back"]).format(obstacle=card["obstacle"])
        elif details and rng.random() < 0.8:
            detail = details.pop(0)
            reply = rng.choice(seeker["disclose"]).format(detail=detail, detail_lower=detail[0].lower() + detail[1:],
                                                         feeling=card["feeling"])
        else:
            reply = rng.choice(seeker["feel"]).format(feeling=card["feeling"])
        said.append({"role": "seeker", "content": reply})
    return said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-card", type=int, default=8, help="dialogues per card (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lines = yaml.safe_load(LINES.read_text(encoding="utf-8"))
    opener = load_protocol("default").opener("en")
    rng = random.Random(args.seed)
    records = []
    for card in builtin_cards("en"):
        for n in range(args.per_card):
            records.append({"id": f"{card.id}-{n}", "card": card.id, "dialog": dialogue(rng, lines, lines["cards"][card.id], opener)})
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    turns = sum(t["role"] == "seeker" for r in records for t in r["dialog"])
    print(f"{args.out}: {len(records)} dialogues, {turns} seeker turns")


if __name__ == "__main__":
    main()
