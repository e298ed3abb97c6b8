"""Print docs/reliability.md's table from an actual run of the reliability scenarios.

    python -m tests.reliability.table [--rate 0.25] [--out DIR]

Runs every fault kind at ``--rate`` (all at once), the always-failing backend with
``--resume --retry-failed``, and the SIGKILL-and-resume run, each against fake
servers on loopback, and prints one markdown row per scenario. Exit code 1 if any
scenario lost or duplicated an episode.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

from esc_eval.testing.scenarios import FAULT_KINDS, run_fault_scenario, run_give_up_scenario, run_kill_scenario

HEADER = "| fault injected | rate | outcome | episodes lost | duplicates |\n|---|---|---|---|---|"


async def table(rate: float, out: Path) -> tuple[str, bool]:
    started = time.monotonic()
    faults = await asyncio.gather(*(run_fault_scenario(out / kind, kind, rate, seed=i) for i, kind in enumerate(FAULT_KINDS)))
    give_up = await run_give_up_scenario(out / "give-up")
    kill = await run_kill_scenario(out / "kill")
    rows = [r.row() for r in faults] + [give_up.row(), kill.row()]
    clean = all(r.audit.ok and r.matched for r in faults) and give_up.retried_audit.ok and give_up.first_audit.ok and kill.audit.ok
    footer = (f"\n\n{len(faults)} fault scenarios: 10 cards x 2 supporters, 2 rounds, judge (7 dimensions) on the same server, "
              f"max_attempts 6; `slow` answers after the client's {1.5}s timeout. Kill scenario: 30 episodes, 3 rounds, "
              f"concurrency 8, judge. Wall time {time.monotonic() - started:.0f}s on {platform.machine()} "
              f"Python {platform.python_version()}.")
    return HEADER + "\n" + "\n".join(rows) + footer, clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.25, help="share of requests that get the fault (default 0.25)")
    parser.add_argument("--out", type=Path, help="keep the scenario stores here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="esc-eval-reliability-") as tmp:
        text, clean = asyncio.run(table(args.rate, args.out or Path(tmp)))
    print(text)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
