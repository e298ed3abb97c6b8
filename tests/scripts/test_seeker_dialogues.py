"""scripts/seeker_dialogues.py: the demo seeker adapter's training data, our own lines, in role, as docs/seeker.md quotes it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.personas import base_role_break
from esc_eval.roles.templates import load_protocol
from esc_eval.runs.training.dialogues import read_dialogues

ROOT = Path(__file__).resolve().parents[2]


def generate(out: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "seeker_dialogues.py"), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_dialogues_read_as_training_data_and_stay_in_role(tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "d.jsonl"
    assert "120 dialogues, 526 seeker turns" in generate(out)
    again = tmp_path / "again.jsonl"
    generate(again)
    assert again.read_bytes() == out.read_bytes(), "deterministic: the documented adapter can be retrained"
    dialogues = read_dialogues(out, builtin_cards("en"))
    assert {d.card.id for d in dialogues} == {c.id for c in builtin_cards("en")}
    opener = load_protocol("default").opener("en")
    assert all(d.transcript[0] == ("supporter", opener) for d in dialogues), "each starts as a run does"
    seeker = [text for d in dialogues for role, text in d.transcript if role == "seeker"]
    rule = base_role_break()
    assert not [text for text in seeker if rule.find(text) is not None]
    # our own words: no run of 6 words from ESC-Eval's cards
    esc = {tuple(w[i:i + 6]) for card in json.loads((shared / "card_high_en.json").read_text(encoding="utf-8"))
           for w in [words(card["base"])] for i in range(len(w) - 5)}
    assert not [text for text in seeker if any(tuple(w[i:i + 6]) in esc for w in [words(text)] for i in range(len(w) - 5))]
