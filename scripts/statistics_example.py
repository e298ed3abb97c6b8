"""The worked example of docs/statistics.md: a real run against fake servers whose judge draws labels from a seeded model.

Nothing here is a language model. The seeker's server states a number derived from the
card's problem text in every reply, so a transcript names its card; the supporters' server answers as
``{model} reply N``, so it names its supporter. The judge's server parses both and
draws a label from a known distribution: card difficulty (-1, 0 or +1, from that number)
+ the supporter's quality on the dimension + noise seeded by the request's seed, plus a
leniency of +0.6 label that humans do not share. Simulated "humans" label six cards of
every supporter from the same distribution without the leniency, so ``--corrected`` has
something to correct. Run from the repository root:

    python scripts/statistics_example.py OUT_DIR

It writes OUT_DIR/run.sqlite and prints the report's table, then the Empathy tables that
docs/statistics.md quotes verbatim (from ``report --format json``; a test checks the quote).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc_eval.runs.store import Store  # noqa: E402
from esc_eval.testing.fake_server import FakeOpenAIServer, default_responder  # noqa: E402

QUALITY = {  # supporter -> label shift per dimension (0 = the middle label 2)
    "warm": {"fluency": 0.8, "diversity": 0.2, "empathic": 1.0, "suggestion": 0.0, "tech": 0.4, "human": 0.6, "overall": 0.7},
    "steady": {"fluency": 0.8, "diversity": 0.1, "empathic": 0.6, "suggestion": 0.2, "tech": 0.3, "human": 0.5, "overall": 0.5},
    "terse": {"fluency": 0.3, "diversity": -0.6, "empathic": -0.4, "suggestion": -0.3, "tech": -0.4, "human": -0.2, "overall": -0.4},
}
LENIENCY = 0.6
DIMENSION_WORDS = {"fluency": "fluency", "diversity": "diversity", "empathic": "empathy", "suggestion": "information",
                   "tech": "support skills", "human": "human-likeness", "overall": "overall"}
"""Dimension key -> how the built-in profile names it after "rate this conversation on"."""


def _seeker(body: dict[str, Any]) -> str:
    if body.get("model") != "esc-role":
        return default_responder(body)
    problem = re.search(r"Problem: (.*)", body["messages"][0]["content"])
    card = int(hashlib.sha256((problem.group(1) if problem else "").encode()).hexdigest()[:6], 16) % 1000
    return f"I am card {card} and struggling (turn {len(body['messages'])})"


def _label(supporter: str, dimension: str, card: int, rng: random.Random, lenient: float) -> int:
    difficulty = (card % 3) - 1
    return max(0, min(4, round(2 + difficulty + QUALITY[supporter][dimension] + lenient + rng.gauss(0, 0.7))))


def _judge(body: dict[str, Any]) -> str:
    prompt = "\n".join(m["content"] for m in body["messages"])
    supporter = next(s for s in QUALITY if f"{s}-model reply" in prompt)
    card = int(re.search(r"I am card (\d+)", prompt).group(1))  # type: ignore[union-attr]
    asked = prompt.lower().split("rate this conversation on")[-1]
    dimension = next(d for d, word in DIMENSION_WORDS.items() if asked.strip().startswith(word))
    digest = hashlib.sha256(f"{body.get('seed')}|{prompt}".encode()).hexdigest()
    return f"Score: {_label(supporter, dimension, card, random.Random(digest), LENIENCY)}"


def _humans(store_path: Path) -> int:
    """Two simulated annotators label every episode of the first six cards, without the judge's leniency."""
    with Store.open(store_path) as store:
        labels = []
        for episode in store.episodes("done"):
            if episode.card_index >= 6:
                continue
            first_seeker_line = store.transcript(episode.key)[1][1]
            card = int(re.search(r"I am card (\d+)", first_seeker_line).group(1))  # type: ignore[union-attr]
            for annotator in ("h1", "h2"):
                rng = random.Random(f"{annotator}|{episode.key}")
                labels += [(episode.key, annotator, d, _label(episode.supporter, d, card, rng, 0.0), 0.0) for d in DIMENSION_WORDS]
        return store.add_annotations(labels)


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    store = out / "run.sqlite"
    async with FakeOpenAIServer(responder=_seeker) as sim, FakeOpenAIServer(responder=_judge) as judge:
        supporters = "".join(f'[[supporters]]\nname = "{s}"\nbase_url = "{sim.base_url}"\nmodel = "{s}-model"\n\n' for s in QUALITY)
        config = out / "run.toml"
        config.write_text(
            '[run]\nname = "statistics-example"\nrounds = 2\nconcurrency = 32\nseed = 0\n\n'
            '[cards]\nlanguage = "en"\n\n'
            f'[seeker]\nbase_url = "{sim.base_url}"\nmodel = "esc-role"\npersonas = ["default", "terse"]\n\n'
            + supporters +
            f'[judge]\nbase_url = "{judge.base_url}"\nmodel = "judge"\nsamples = 3\ntemperature = 0.7\n', encoding="utf-8")
        run = await asyncio.create_subprocess_exec(sys.executable, "-m", "esc_eval.runs.cli", "run", str(config), "--store", str(store),
                                                   "--no-monitor", cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
        if await run.wait() != 0:
            raise SystemExit(f"esc-eval run failed ({run.returncode})")
    print(f"{_humans(store)} simulated human labels written")
    print(_report(store, "--compare", "--power", "10", "--corrected", "--plot", str(out / "board.png")))
    data = json.loads(_report(store, "--format", "json", "--compare", "--power", "10", "--corrected"))
    seven = json.loads(_report(store, "--format", "json", "--compare", "--power", "7"))
    print(digest(data, seven))


def _report(store: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", "report", str(store), *args], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def _p(value: float) -> str:
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def digest(data: dict[str, Any], seven: dict[str, Any], dimension: str = "empathic") -> str:
    """The Empathy tables of docs/statistics.md's worked example, from ``report --format json`` (the doc quotes them verbatim)."""
    lines = ["| supporter | mean | 95% CI | se | n / episodes / cards | judge share: a label / the mean | corrected (PPI) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in data["rows"]:
        s = row["scores"][dimension]
        noise, c = s["judge_noise"], s["corrected"]
        lines.append(f"| {row['group']['supporter']} | {s['mean']:.1f} | [{s['ci_low']:.1f}, {s['ci_high']:.1f}] | {s['se_clustered']:.2f} "
                     f"| {s['n']} / {s['n_episodes']} / {s['n_cards']} | {100 * noise['judge_share']:.0f}% / "
                     f"{100 * noise['judge_share_of_mean']:.0f}% | {c['mean']:.1f} [{c['ci_low']:.1f}, {c['ci_high']:.1f}], "
                     f"h = {c['n_labelled']}, λ = {c['weight']:.2f} |")
    lines += ["", "| pair | diff | 95% CI | p | p (Holm) | W/T/L | cards | flags |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in data["comparisons"]:
        if c["dimension"] == dimension:
            lines.append(f"| {c['a']} − {c['b']} | {c['diff']:.1f} | [{c['ci_low']:.1f}, {c['ci_high']:.1f}] | {_p(c['p_value'])} | "
                         f"{_p(c['p_holm'])}{' *' if c['p_holm'] < 0.05 else ''} | {c['wins']}/{c['ties']}/{c['losses']} | "
                         f"{c['n_cards']} | {', '.join(c['flags']) or '–'} |")
    lines += ["", "| pair | sd of diff | cards | --power 10: cards needed | after Holm | --power 7: cards needed | after Holm | "
              "detectable now |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ten, sev in zip(data["power"]["rows"], seven["power"]["rows"]):
        if ten["dimension"] == dimension:
            lines.append(f"| {ten['a']} − {ten['b']} | {ten['sd_diff']:.1f} | {ten['n_cards']} | {ten['cards_needed']} | "
                         f"{ten['cards_needed_family']} | {sev['cards_needed']} | {sev['cards_needed_family']} | "
                         f"{ten['min_detectable']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "esc-eval-runs/statistics-example")))
