"""Benchmarks: ``python -m benchmarks [scenario ...] [--quick] [--plot docs/performance.png]``.

Each scenario prints one JSON line of figures. Scenarios (see ``docs/performance.md``):

- ``overhead-100``, ``overhead-1000``, ``overhead-5000``: the full esc-eval runner (store + judge,
  OpenAI backend) against a fake OpenAI server in a separate process, beside a bare
  asyncio + aiohttp client making the same requests; wall time, client CPU, peak RSS.
- ``saturation``: tokens/s of an esc-eval run against ``transformers serve --continuous-batching``
  (the embedded SmolLM2) beside a raw load generator at the same concurrency.
- ``local``: the in-process ``transformers_local`` backend with continuous batching on 8
  concurrent episodes beside ESC-Eval's sequential one-reply-at-a-time loop.
- ``engines``: every local engine (transformers float32/bfloat16, vLLM in-process and its server,
  ``transformers serve``) on the same plan at C = 8 and 16, one at a time (``benchmarks.engines``).

Each measured client runs in a fresh child process, so its CPU time and peak RSS are its own.
"""
