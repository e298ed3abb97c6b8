"""How cost grows with N and C: overhead runs over a small grid, drawn with matplotlib into one PNG."""

from __future__ import annotations

from typing import Any

from benchmarks.overhead import overhead

GRID_C = (100, 1000, 5000)
"""Concurrency (N = 3 x C unless an overhead scenario of this invocation measured that C)."""
GRID_N = (1000, 3000)
"""Episodes at C = 1000."""


def sweep_and_plot(path: str, measured: list[dict[str, Any]], *, quick: bool = False, delay: float = 0.02) -> list[dict[str, Any]]:
    """Draw cost against C (N = a few x C) and against N (every measured point), reusing ``measured`` overhead rows.

    Returns the rows measured here (missing grid points), for printing.
    """
    rows = {(r["n"], r["c"]): r for r in measured if str(r.get("scenario", "")).startswith("overhead") and "error" not in r}
    grid_c = GRID_C[:2] if quick else GRID_C
    grid_n = GRID_N[:1] if quick else GRID_N
    new: list[dict[str, Any]] = []

    def row(n: int, c: int) -> dict[str, Any]:
        if (n, c) not in rows:
            rows[(n, c)] = overhead(n, c, delay=delay)
            rows[(n, c)]["scenario"] = f"sweep-n{n}-c{c}"
            new.append(rows[(n, c)])
        return rows[(n, c)]

    for cc in grid_c:
        if not any(c == cc for _, c in rows):
            row(3 * cc, cc)
    by_c = list({c: r for (n, c), r in sorted(rows.items())}.values())  # one point per C (its largest N)
    for n in grid_n:
        row(n, 1000)
    by_n = list(rows.values())  # every measured (N, C): cost against N, each point labelled with its C
    draw(path, sorted(by_c, key=lambda r: r["c"]), sorted(by_n, key=lambda r: r["n"]))
    return new


def draw(path: str, by_c: list[dict[str, Any]], by_n: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    xs = [r["c"] for r in by_c]
    for side, style in (("esc_eval", "-"), ("bare", "--")):
        name = "esc-eval" if side == "esc_eval" else "bare aiohttp"
        ax.plot(xs, [r[side]["cpu_s"] / max(1, r[side]["calls"]) * 1000 for r in by_c], "s" + style, label=f"{name}")
    for r in by_c:
        ax.annotate(f"x{r['ratio_cpu']}", (r["c"], r["esc_eval"]["cpu_s"] / max(1, r["esc_eval"]["calls"]) * 1000),
                    fontsize=7, textcoords="offset points", xytext=(3, 4))
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("concurrency C (N = a few x C)")
    ax.set_ylabel("client CPU ms per request")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    xs = [r["n"] for r in by_n]
    ax.plot(xs, [r["esc_eval"]["wall_s"] for r in by_n], "o-", label="esc-eval wall s")
    ax.plot(xs, [r["bare"]["wall_s"] for r in by_n], "o--", label="bare aiohttp wall s")
    ax.plot(xs, [r["esc_eval"]["cpu_s"] for r in by_n], "s-", label="esc-eval CPU s")
    ax.plot(xs, [r["bare"]["cpu_s"] for r in by_n], "s--", label="bare aiohttp CPU s")
    for r in by_n:
        ax.annotate(f"C={r['c']}", (r["n"], r["esc_eval"]["wall_s"]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("episodes N")
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[2]
    xs = [r["c"] for r in by_c]
    ax.plot(xs, [r["rss_kb_per_active_episode"] for r in by_c], "o-", label="esc-eval")
    ax.plot(xs, [r["bare_rss_kb_per_active_episode"] for r in by_c], "o--", label="bare aiohttp")
    ax.axhline(50, color="grey", lw=0.8, ls=":", label="target 50 KB")
    ax.set_xscale("log")
    ax.set_xlabel("concurrency C")
    ax.set_ylabel("peak RSS growth per active episode (KB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("esc-eval framework overhead vs a bare asyncio + aiohttp client (fake server, 20 ms replies, 17 calls/episode)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_engines(path: str, rows: list[dict[str, Any]], *, machine: dict[str, Any]) -> None:
    """Tokens/s per engine at each C (bars, min-max of the repeats as error bars), CPU used written on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(dict.fromkeys(r["engine"] for r in rows))
    cs = sorted({r["c"] for r in rows})
    by = {(r["engine"], r["c"]): r for r in rows if "tokens_per_s" in r}
    width = 0.8 / max(1, len(cs))
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for i, c in enumerate(cs):
        xs = [k + (i - (len(cs) - 1) / 2) * width for k in range(len(engines))]
        found = [by.get((e, c)) for e in engines]
        heights = [r["tokens_per_s"] if r else 0 for r in found]
        low = [r["tokens_per_s"] - min(r["runs_tokens_per_s"]) if r else 0 for r in found]
        high = [max(r["runs_tokens_per_s"]) - r["tokens_per_s"] if r else 0 for r in found]
        bars = ax.bar(xs, heights, width, yerr=[low, high], capsize=3, label=f"C = {c}")
        for bar, r in zip(bars, found, strict=True):
            text = f"CPU {r['cpu_used']:.1%}" if r else "skipped"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", fontsize=7,
                        textcoords="offset points", xytext=(0, 3))
    dtypes = {r["engine"]: r.get("settings", {}).get("dtype", "") for r in rows if "tokens_per_s" in r}
    ax.set_xticks(range(len(engines)), [f"{e}\n{dtypes.get(e, '')}" for e in engines], fontsize=8)
    ax.set_ylabel("completion tokens / s")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    plan = next(iter(by.values()), {})
    ax.set_title(f"Engines on the same plan ({plan.get('episodes')} episodes, {plan.get('rounds')} rounds, {plan.get('max_tokens')} max tokens, "
                 f"SmolLM2-135M-Instruct): {machine.get('cpus')} cores, {machine.get('cpu', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
