"""Scenarios with the real embedded model (SmolLM2-135M-Instruct): server saturation and local batching.

``saturation``: ``transformers serve FOLDER --continuous-batching`` in its own process; a raw
load generator (asyncio + aiohttp, the same conversations: system prompt + growing history,
seeker and supporter turns) and then an esc-eval run (the full ``Runner`` with store, OpenAI
backend) at the same concurrency; completion tokens per second of each.

``local``: the in-process ``TransformersLocalBackend`` with continuous batching
(``max_batch=8``) driving 8 concurrent episodes through the ``Runner``, beside ESC-Eval's
loop: one dialogue after another, one reply at a time (``max_batch=1``, nothing concurrent, and
no prefix cache: ESC-Eval prefills every prompt whole). Same cards, rounds and max tokens; greedy
decoding; each side's model load is timed apart, and tokens/s is given without and with it.
``local-lora``: the same with the demo's seeker (the packaged LoRA adapter) on both sides.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.overhead import _loop_name, _peak_rss_mb


def _config(c: int, episodes: int, rounds: int, max_tokens: int, endpoint: dict[str, Any]) -> Any:
    from esc_eval.runs.config import parse_config

    return parse_config({
        "run": {"rounds": rounds, "concurrency": c, "seed": 0},
        "cards": {"language": "en", "limit": episodes},
        # role_break_retries 0: ESC-Eval's loop and the raw generator never ask a seeker again, so neither does esc-eval here
        "seeker": {**endpoint, "model": endpoint.get("model"), "max_tokens": max_tokens, "role_break_retries": 0},
        "supporters": [{**endpoint, "name": "sup", "max_tokens": max_tokens}],
    })


async def _esc_eval_run(config: Any, backends: dict[str, Any] | None = None) -> dict[str, Any]:
    from esc_eval.runs.execution.runner import Runner, RunPlan
    from esc_eval.runs.store import Store

    with tempfile.TemporaryDirectory(prefix="esc-eval-bench-") as tmp:
        store = Store.create(Path(tmp) / "bench.sqlite", config=config.to_dict())
        runner = Runner(RunPlan.prepare(config), store, backends=backends)
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = await runner.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = [b.stats for b in runner.pool.all()]
    tokens = sum(s.completion_tokens for s in stats)
    return {"episodes_done": result.progress.done, "episodes_failed": result.progress.failed,
            "requests": sum(s.requests for s in stats), "completion_tokens": tokens,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "tokens_per_s": round(tokens / wall, 1)}


def _system_prompts(episodes: int) -> tuple[list[str], str]:
    """The seeker system prompts (one per card) and the supporter's, as esc-eval sends them."""
    from esc_eval.roles.loaders import builtin_cards
    from esc_eval.roles.templates import load_protocol

    protocol = load_protocol("default")
    cards = builtin_cards("en")[:episodes]
    return [protocol.seeker_prompt(card) for card in cards], protocol.supporter_prompt("en")


async def _raw_generator(url: str, model: str, c: int, episodes: int, rounds: int, max_tokens: int) -> dict[str, Any]:
    """The same conversations with nothing but aiohttp: ``c`` in flight, each request carrying the history."""
    import aiohttp

    seeker_systems, supporter_system = _system_prompts(episodes)
    opener = "Hello, I'm here to listen. What's on your mind?"
    tokens = requests = 0
    slots = asyncio.Semaphore(c)

    async def call(session: aiohttp.ClientSession, messages: list[dict[str, str]]) -> str:
        nonlocal tokens, requests
        body = {"model": model, "messages": messages, "max_tokens": max_tokens}
        async with session.post(url + "/chat/completions", json=body) as response:
            data = await response.json()
        tokens += int((data.get("usage") or {}).get("completion_tokens") or 0)
        requests += 1
        return str(data["choices"][0]["message"]["content"]).strip() or "..."

    async def episode(session: aiohttp.ClientSession, system: str) -> None:
        async with slots:
            lines = [opener]
            for _ in range(rounds):
                seeker = [{"role": "system", "content": system}] + [
                    {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(lines)]
                lines.append(await call(session, seeker))
                supporter = [{"role": "system", "content": supporter_system}] + [
                    {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(lines[1:])]
                lines.append(await call(session, supporter))

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=c)) as session:
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(episode(session, s) for s in seeker_systems))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"requests": requests, "completion_tokens": tokens, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "tokens_per_s": round(tokens / wall, 1)}


async def saturation(*, c: int = 16, episodes: int = 16, rounds: int = 2, max_tokens: int = 32) -> dict[str, Any]:
    from esc_eval.agents.backends.transformers_local import embedded_model_dir
    from esc_eval.testing.model_server import start_transformers_serve

    episodes = len(_system_prompts(episodes)[0])  # the built-in cards bound it (15 per language)
    folder = embedded_model_dir()
    args = ["--continuous-batching", "--cb-num-blocks", "512", "--cb-block-size", "32"]
    async with start_transformers_serve(folder, extra_args=args, timeout=180) as served:
        warm = await _raw_generator(served.base_url, served.model_name, 2, 2, 1, 8)  # noqa: F841  (compile/warm caches)
        before = await _raw_generator(served.base_url, served.model_name, c, episodes, rounds, max_tokens)
        endpoint = {"base_url": served.base_url, "model": served.model_name, "max_connections": c, "timeout": 600.0}
        esc = await _esc_eval_run(_config(c, episodes, rounds, max_tokens, endpoint))
        after = await _raw_generator(served.base_url, served.model_name, c, episodes, rounds, max_tokens)
    # the raw generator runs before and after esc-eval, so a drift in the machine's load shows and averages out
    raw = {key: before[key] + after[key] for key in ("requests", "completion_tokens", "wall_s", "cpu_s")}
    raw["tokens_per_s"] = round(raw["completion_tokens"] / raw["wall_s"], 1)
    raw["runs_tokens_per_s"] = [before["tokens_per_s"], after["tokens_per_s"]]
    return {
        "scenario": "saturation", "server": "transformers serve --continuous-batching", "model": "SmolLM2-135M-Instruct",
        "c": c, "episodes": episodes, "rounds": rounds, "max_tokens": max_tokens,
        "esc_eval": esc, "raw": raw,
        "ratio_tokens_per_s": round(esc["tokens_per_s"] / raw["tokens_per_s"], 3) if raw["tokens_per_s"] else None,
        "completed": esc["episodes_done"] == episodes,
    }


async def local(*, episodes: int = 8, rounds: int = 2, max_tokens: int = 48, dtype: str | None = None,
                seeker_adapter: bool = False) -> dict[str, Any]:
    """Both sides load the model in ``dtype`` (default: the backend's, float32).

    With ``seeker_adapter`` the seeker is the demo's (the base model plus the packaged
    ``runs/data/seeker_adapter``) on both sides: esc-eval serves it and the supporter as two roles
    of one loaded model, batched together; ESC-Eval's loop applies it to one reply at a time.
    Each side's ``load_s`` (tokenizer, model, adapters, packing) is timed apart from generation:
    ``tokens_per_s`` counts generation only, ``tokens_per_s_with_load`` adds that side's load.
    """
    import importlib
    from importlib import resources

    from esc_eval.agents.backends.packed_linear import kernel_fault
    from esc_eval.agents.backends.torch_import import import_torch
    from esc_eval.agents.backends.transformers_local import TransformersLocalBackend
    from esc_eval.agents.messages import SamplingParams
    from esc_eval.environments.episode import Episode, Role
    from esc_eval.environments.views import seeker_view, supporter_view
    from esc_eval.roles.loaders import builtin_cards
    from esc_eval.roles.templates import load_protocol

    # Imports and the packed kernels' self-test once, before either side's load is timed (else the first pays them);
    # torch first, through import_torch (it sets OpenMP's wait policy before torch loads).
    import_torch()
    importlib.import_module("transformers")
    kernel_fault()
    if seeker_adapter:
        importlib.import_module("peft")

    params = SamplingParams(max_tokens=max_tokens)
    adapters = {"seeker": Path(str(resources.files("esc_eval.runs") / "data" / "seeker_adapter"))} if seeker_adapter else {}
    seeker_model = "seeker" if seeker_adapter else None
    batched = TransformersLocalBackend(model=None, max_batch=8, dtype=dtype)
    roles = {"seeker": batched.role("seeker", adapters=adapters, default_model=seeker_model), "sup": batched.role("sup")}
    sequential = TransformersLocalBackend(model=None, max_batch=1, dtype=dtype, prefix_cache_mb=0, adapters=adapters)
    try:
        warm = [{"role": "user", "content": "Hello"}]
        await batched.complete(warm, SamplingParams(max_tokens=4))  # loads; load_seconds is the load alone
        await sequential.complete(warm, SamplingParams(max_tokens=4))
        warm_prefilled = batched.prefilled_tokens, sequential.prefilled_tokens

        # ESC-Eval's loop: dialogue after dialogue, reply after reply.
        protocol = load_protocol("default")
        cards = builtin_cards("en")[:episodes]
        cpu0, t0 = time.process_time(), time.perf_counter()
        tokens = 0
        for index, card in enumerate(cards):
            episode = Episode(f"seq/{index}", card, "sup")
            episode.add(Role.SUPPORTER, protocol.opener("en"), generated=False)
            for _ in range(rounds):
                for role, view, model in ((Role.SEEKER, seeker_view(protocol, episode), seeker_model),
                                          (Role.SUPPORTER, supporter_view(protocol, episode), None)):
                    reply = await sequential.complete(view, params, model=model)
                    tokens += reply.completion_tokens
                    episode.add(role, reply.text, completion_tokens=reply.completion_tokens)
        seq_wall, seq_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        seq = {"episodes_done": len(cards), "prefilled_tokens": sequential.prefilled_tokens - warm_prefilled[1], "completion_tokens": tokens,
               "wall_s": round(seq_wall, 2), "cpu_s": round(seq_cpu, 2),
               "tokens_per_s": round(tokens / seq_wall, 1), "dialogues_per_min": round(len(cards) / seq_wall * 60, 2)}
        _with_load(seq, sequential.load_seconds)

        config = _config(episodes, episodes, rounds, max_tokens, {"backend": "transformers"})
        esc = await _esc_eval_run(config, backends=roles)
        esc["dialogues_per_min"] = round(esc["episodes_done"] / esc["wall_s"] * 60, 2)
        esc["prefilled_tokens"], esc["reused_tokens"] = batched.prefilled_tokens - warm_prefilled[0], batched.reused_tokens
        esc["largest_batch"] = batched.largest_batch
        _with_load(esc, batched.load_seconds)
    finally:
        await batched.aclose()
        await sequential.aclose()
    return {
        "scenario": "local" + (f"-{dtype}" if dtype else "") + ("-lora" if seeker_adapter else ""),
        "backend": "transformers_local", "model": "SmolLM2-135M-Instruct", "seeker_adapter": seeker_adapter,
        "dtype": dtype or "float32", "packed_linears": batched.packed_linears,
        "episodes": episodes, "concurrent": episodes, "rounds": rounds, "max_tokens": max_tokens, "max_batch": 8,
        "micro_batched": esc, "sequential": seq,
        "speedup_tokens_per_s": round(esc["tokens_per_s"] / seq["tokens_per_s"], 2) if seq["tokens_per_s"] else None,
        "speedup_with_load": round(esc["tokens_per_s_with_load"] / seq["tokens_per_s_with_load"], 2) if seq["tokens_per_s_with_load"] else None,
        "speedup_dialogues": round(esc["dialogues_per_min"] / seq["dialogues_per_min"], 2) if seq["dialogues_per_min"] else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "completed": esc["episodes_done"] == episodes,
    }


def _with_load(side: dict[str, Any], load_seconds: float | None) -> None:
    """Add the side's model load (s) and its tokens/s counting that load."""
    side["load_s"] = round(load_seconds or 0.0, 2)
    side["tokens_per_s_with_load"] = round(side["completion_tokens"] / (side["wall_s"] + side["load_s"]), 1)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(local(episodes=2, rounds=1, max_tokens=8))), _loop_name())
