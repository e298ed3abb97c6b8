"""A store for the viewer tests: supporters × personas × cards of finished episodes with hidden state, judge replies and events."""

from __future__ import annotations

import json
import random
from pathlib import Path

from esc_eval.runs.store import EpisodeRows, Store
from esc_eval.runs.store.records import FINAL_ROUND

DIMENSIONS = ("fluency", "diversity", "empathic", "suggestion", "tech", "human", "overall")  # the default profile's
SUPPORTERS = ("kind-bot", "terse-bot")
PERSONAS = ("default", "guarded", "impatient")
HOSTILE = ("<script>window.pwned = 1</script>Hello <b>there</b>", '<img src=x onerror="window.pwned = 2">I feel low.')


def key(supporter: str, persona: str, card: int) -> str:
    return f"{supporter}/{persona}/en-{card:05d}/test/r0"


WORDS = [f"{a}{b}" for a in ("feel", "work", "sleep", "talk", "hope", "try", "tired", "friend", "exam", "home")
         for b in ("", "s", "ing", "ed", "er", "ly", "ness", "ful", "less", "able")]  # 100 words: text that gzips as prose does


def _prose(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "."


def _episode(supporter: str, persona: str, card: int, rng: random.Random, hostile: bool, long: bool = False) -> EpisodeRows:
    """One episode: kind-bot lowers distress and scores higher than terse-bot (so the charts and leaderboard differ).

    ``long``: ten rounds of 200-character utterances, the seeker's full hidden state and 400-character
    judge replies, the size of a real ESC-Eval episode (for the report's size budget).
    """
    kind = supporter == "kind-bot"
    language = "zh" if card % 5 == 4 else "en"
    rounds = 10 if long else 3 + card % 3
    distress, turns = 8, []
    for r in range(rounds):
        text = HOSTILE[0] if hostile and r == 0 else (f"I hear you, that sounds hard (card {card})." if kind else "ok.")
        text = _prose(rng, 200) if long else text
        turns.append({"idx": 2 * r, "role": "supporter", "text": text, "prompt_tokens": 50, "completion_tokens": 12,
                      "latency": 0.5, "at": 1000.0 + r, "state": None})
        distress = max(0, distress - (2 if kind else 0) + (0 if kind else 1))
        state = {"emotion": "sad" if distress > 4 else "calmer", "distress": distress, "revealed": list(range(min(r + 1, 3))), "facts": 3}
        seeker = HOSTILE[1] if hostile and r == 0 else f"Seeker words {r} about exam stress on card {card}."
        if long:
            seeker = _prose(rng, 200)
            state |= {"persona": persona, "round": r + 1, "empathy": kind, "advice": False, "unhelpful": 0 if kind else r + 1,
                      "advice_streak": 0, "stage": "middle", "leaving": None, "marker": False}
        turns.append({"idx": 2 * r + 1, "role": "seeker", "text": seeker, "prompt_tokens": 80, "completion_tokens": 20,
                      "latency": 0.4, "at": 1000.5 + r, "state": json.dumps(state)})
    scores = []
    for dim in DIMENSIONS:
        label = min(4, max(0, (3 if kind else 1) + rng.choice((-1, 0, 1))))
        raw = _prose(rng, 400) if long else f"Reasoning about {dim}. Score: {label}"
        scores.append({"dimension": dim, "round": FINAL_ROUND, "label": label, "raw": raw,
                       "model": "judge-test", "latency": 0.2, "status": "ok", "error": None, "at": 1010.0, "sample": 0})
    episode = {"key": key(supporter, persona, card), "card_index": card, "card_id": f"en-{card:05d}", "language": language,
               "category": ("work", "family", "study")[card % 3], "source": "test", "supporter": supporter, "persona": persona,
               "repeat": 0, "seed": card, "status": "done", "outcome": "terminated" if kind else "truncated",
               "reason": "persona left" if kind else "max rounds", "attempts": 2 if card == 3 else 1, "started_at": 1000.0,
               "ended_at": 1000.0 + rounds}
    return EpisodeRows(episode, tuple(turns), tuple(scores))


def episode_rows(supporter: str, persona: str, card: int) -> EpisodeRows:
    """One more episode, to write into a store while it is viewed."""
    return _episode(supporter, persona, card, random.Random(card), False)


def make_store(path: Path, *, cards: int = 20, supporters: tuple[str, ...] = SUPPORTERS, personas: tuple[str, ...] = PERSONAS,
               hostile_card: int | None = None, long: bool = False) -> Path:
    """``supporters × personas × cards`` finished episodes; card ``hostile_card`` carries markup in its first two turns."""
    rng = random.Random(7)
    store = Store.create(path, origin="test")
    store.import_episodes(_episode(s, p, c, rng, c == hostile_card, long) for s in supporters for p in personas for c in range(cards))
    if cards > 3:
        store.add_event("retry", "HTTP 503, retrying in 0.5 s", endpoint="http://127.0.0.1:1/v1", episode_key=key(supporters[0], personas[0], 3))
    store.close_sync()
    return path
