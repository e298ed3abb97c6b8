"""In-process chat completions from a local transformers model, continuously batched.

``TransformersLocalBackend`` serves one causal LM folder (by default the embedded
SmolLM2-135M-Instruct, see ``embedded_model_dir``) to many concurrent callers with two
threads that never wait on the event loop:

- the *prefill thread* renders each queued request through the tokenizer's chat template,
  prefills it alone (reusing its longest cached prefix), picks its first token, and keeps
  up to ``max_batch`` such ready rows waiting for a slot;
- the *decode thread* runs decode steps over the running rows (``esc_eval.agents.backends.decoding``),
  splicing ready rows in and retiring rows that produced the end token or reached their
  own ``max_tokens`` between steps, handing each answer to its caller's loop at once.

A new request thus joins the running decode at the step after its prefill, a short
answer never waits for a long one, and the decode never stops for a newcomer's prefill.
The two overlap well on a CPU: a decode step of a small model is bound by memory and by
the serial work between its parallel regions, a prefill by arithmetic (on a 2-core AVX2
AMD EPYC VM, a decode step of 8 rows and a 100-token prefill side by side did the work
of both back to back in 0.75 of the time). The prefill thread uses half of ``threads``
(at least one) torch threads, the decode thread all of them; both are per-thread OpenMP
settings. A cancelled caller's row is dropped at the next step.

Roles and LoRA adapters: ``role(name, adapters=..., default_model=...)`` gives each role (the
seeker with its adapter, the supporter, the judge with one adapter per dimension) its own
``ChatBackend`` on this one loaded model; every row carries its adapter (or none), applied per
row in the same decode steps (``esc_eval.agents.backends.lora_local``), so roles never load a
second copy nor wait for each other's ``generate``. The ``transformers`` factory shares one
backend per model this way.

Every row keeps its own decoding settings: greedy when ``temperature`` is None or 0,
otherwise sampling with ``temperature``/``top_p`` from a ``torch.Generator`` of its
own, seeded with ``params.seed``. Requests never need to agree to share a batch, and
(in float32, below) a seeded request draws the same tokens whatever else is running.

Prefix cache: each prompt's keys and values are kept once it is prefilled, and later
prompts that extend them (an agent's next turn, another episode with the same system
prompt) prefill only the rest (``prefix_cache_mb``; ``esc_eval.agents.backends.kv_cache``).

Numerics: the embedded folder is float32. On a CPU its linear layers run on oneDNN with
packed weights (``packed_weights``; ``esc_eval.agents.backends.packed_linear``; a layer's query,
key and value projections share one product, as do its gate and up projections), whose products
are bit-identical for a row whatever the other rows and the thread count: so a prompt
gives the same greedy answer alone or in a batch, prefilled whole or from the cache, as
``generate`` gives with the same loaded model (the tests check this with rows joining a
running decode). Against a vanilla transformers model (torch's MKL kernels, which are
not batch-invariant) the logits differ in the last bits, so a greedy answer can part
where two tokens nearly tie. In bfloat16 about half of the batched answers diverged
after a few dozen tokens, and on CPUs without bfloat16 instructions bfloat16 is much
slower than float32 (on the AMD EPYC VM above: a decode step of 8 rows 3.7x, a prefill
7-12x slower); where the CPU has AMX it is faster in large batches: pass
``dtype="bfloat16"`` to trade reproducibility for that.

CPU threads: torch uses ``threads`` intra-op threads (default: the CPUs this process may
use). Before torch's first import this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless
the user set it: with spinning OpenMP waiters, generation on 2 shared cores collapsed up
to 10x whenever anything else ran (see ``import_torch``).

torch and transformers are imported only when a model is loaded or converted, so
importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.agents.backends.base import LOADING_LOG, BackendError, BackendStats, EmptyReply, RequestRejected
from esc_eval.agents.backends.decoding import RowSampler, RunningBatch, SoloBatch, next_tokens
from esc_eval.agents.backends.embedded import EMBEDDED_ALIASES, EMBEDDED_NAME, cache_root, embedded_gguf, embedded_model_dir
from esc_eval.agents.backends.kv_cache import PrefixCache, preallocated_layer
from esc_eval.agents.backends.lora_local import attach_adapters, check_adapter_folder, row_adapters
from esc_eval.agents.backends.packed_linear import pack_if_sound
from esc_eval.agents.backends.torch_import import import_torch
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams

log = logging.getLogger(__name__)
load_log = logging.getLogger(LOADING_LOG)


# --------------------------------------------------------------------------- the backend


@dataclass(eq=False)
class _Request:
    messages: list[dict[str, str]]
    params: SamplingParams
    future: asyncio.Future[Completion]
    loop: asyncio.AbstractEventLoop
    label: str
    adapter: int | None = None  # index into the backend's adapters; None: the base model
    enqueued: float = field(default_factory=time.perf_counter)

    def abandoned(self) -> bool:
        """The caller gave up (cancelled, or its event loop is gone): its row need not be decoded."""
        return self.future.done() or self.loop.is_closed()


@dataclass(eq=False)
class _Row:
    request: _Request
    prompt_tokens: int
    sampler: RowSampler
    tokens: list[int]


class TransformersLocalBackend:
    """A ``ChatBackend`` that runs a local transformers model in this process, continuously batched.

    Args:
        model: a local transformers folder (config, weights, tokenizer with a chat
            template); ``None``, ``"embedded"`` or ``"smollm2-135m-instruct"`` mean the
            embedded SmolLM2-135M-Instruct (``embedded_model_dir()``, converted on first use).
        max_batch: rows decoding together, at most; more requests wait for a free row.
        device: torch device for the model and inputs.
        name: label for counters and ``Completion.model``.
        dtype: torch dtype name; ``None`` keeps the folder's own (float32 for the embedded model).
        threads: torch intra-op threads of the decode thread (the prefill thread uses half, at
            least one); ``None`` means the CPUs this process may use.
        prefix_cache_mb: memory for past prompts' keys and values (see the module docstring);
            0 turns prefix reuse off.
        packed_weights: run a float32 CPU model's linear layers on oneDNN with their weights
            packed once (``esc_eval.agents.backends.packed_linear``), if its load-time self-test passes
            and ``ESC_EVAL_PACKED`` is not ``0``; False keeps torch's default kernels.

    The model is loaded once, lazily, in the backend's own thread (never on the event
    loop). ``complete(model=...)`` accepts only names of this one model (``name``, the
    folder path as given, or ``"embedded"``/``"smollm2-135m-instruct"``); any
    other name raises ``RequestRejected`` rather than silently answering with the
    wrong model.

    Attributes:
        stats: the counters every backend keeps.
        batches_run: decode steps run so far (each feeds one token to every running row).
        largest_batch: the most rows one decode step served.
        load_seconds: how long loading the model took (None before it is loaded).
        prefilled_tokens: prompt tokens the model computed.
        reused_tokens: prompt tokens whose keys and values came from the prefix cache instead.
        packed_linears: linear layers running packed on oneDNN (0 before loading, or when not packed).

    Examples:
        >>> backend = TransformersLocalBackend(max_batch=8)             # doctest: +SKIP
        >>> reply = await backend.complete(                             # doctest: +SKIP
        ...     [{"role": "user", "content": "I can't sleep."}], SamplingParams(max_tokens=32))
        >>> await backend.aclose()                                      # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_batch: int = 8,
        device: str = "cpu",
        name: str = "local",
        dtype: str | None = None,
        threads: int | None = None,
        prefix_cache_mb: float = 512,
        packed_weights: bool = True,
        adapters: Mapping[str, str | Path] | None = None,
        default_model: str | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must not be negative, got {prefix_cache_mb}")
        self.folder: Path | None = None
        if model is not None and str(model) not in EMBEDDED_ALIASES:
            self.folder = Path(model).expanduser()
            if not self.folder.is_dir():
                raise ValueError(f"model {str(model)!r}: not a folder (a local transformers model folder is required)")
        self.max_batch = max_batch
        self.device = device
        self.name = name
        self.dtype = dtype
        self.threads = threads if threads is not None else _usable_cpus()
        self.prefill_threads = max(1, self.threads // 2)
        self.stats = BackendStats(name)
        self.batches_run = 0
        self.largest_batch = 0
        self.load_seconds: float | None = None
        self.prefilled_tokens = 0
        self.reused_tokens = 0
        self.packed_weights = packed_weights
        self.packed_linears = 0
        self._prefixes: PrefixCache | None = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb else None
        self._aliases = {name, "base"} | (set(EMBEDDED_ALIASES) if self.folder is None else {str(model), str(self.folder)})
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos_ids: list[int] = []
        self._pad_id = 0
        self._plain_cache = False
        self._load_lock = threading.Lock()
        self._queue = threading.Condition()  # guards _pending, _ready, _prefilling and _closed between the threads
        self._pending: deque[_Request] = deque()  # queued, not yet prefilled
        self._ready: deque[tuple[_Row, Any]] = deque()  # prefilled, waiting for a slot in the running batch
        self._prefilling = False
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False
        self._adapter_folders: list[Path] = []  # an adapter's index in rows; one entry per distinct folder
        self._role_names: list[str] = []
        self.adapters = self._register(adapters or {})
        if default_model is not None and default_model not in self.adapters:
            raise ValueError(f"default adapter {default_model!r} is not one of {', '.join(sorted(self.adapters)) or 'no adapters'}")
        self.default_model = default_model

    # ----------------------------------------------------------------- ChatBackend

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        """Queue one chat, to join the running decode at its next step, and wait for its answer.

        ``Completion.latency`` counts from this call to the answer (queueing included);
        ``completion_tokens`` counts the end-of-turn token when the model produced one.

        Raises:
            RequestRejected: an unknown ``model`` name or invalid sampling values.
            EmptyReply: the model produced only whitespace or special tokens.
            BackendError: loading or generation failed, or the backend is closed.
        """
        return await self.serve(messages, params, model, role=self)

    async def serve(self, messages: Sequence[ChatMessage], params: SamplingParams, model: str | None, *,
                    role: TransformersLocalBackend | TransformersRole) -> Completion:
        """``complete`` for ``role`` (this backend or one of its ``role`` views): its names, adapters and counters."""
        try:
            adapter = self._check(params, model or role.default_model, role)
        except RequestRejected as exc:
            role.stats.fault(exc.kind, str(exc), retried=False)
            raise
        loop = asyncio.get_running_loop()
        request = _Request([{"role": m["role"], "content": m["content"]} for m in messages], params, loop.create_future(), loop,
                           model or role.name, adapter)
        with self._queue:
            if self._closed:
                raise BackendError(f"{role.name}: backend is closed")
            self._pending.append(request)
            for kind, loop_body in (("prefill", self._prefill_loop), ("decode", self._decode_loop)):
                if kind not in self._threads or not self._threads[kind].is_alive():
                    self._threads[kind] = threading.Thread(target=loop_body, name=f"{self.name}-{kind}", daemon=True)
                    self._threads[kind].start()
            self._queue.notify_all()
        role.stats.in_flight += 1
        try:
            completion = await request.future
        except BackendError as exc:
            role.stats.fault(exc.kind, str(exc), retried=False)
            raise
        finally:
            role.stats.in_flight -= 1
        role.stats.done(completion)
        return completion

    def role(self, name: str, *, adapters: Mapping[str, str | Path] | None = None,
             default_model: str | None = None) -> TransformersRole:
        """A ``ChatBackend`` for one role on this backend's model: its own name, counters and adapter names.

        Roles share the loaded model and the running batch (a seeker with its LoRA adapter and a
        supporter without one decode in the same steps). Adapters must be added before the model
        loads (the first request). Closing the backend closes its roles.
        """
        role = TransformersRole(self, name, self._register(adapters or {}), default_model)
        self._role_names.append(name)
        return role

    def _register(self, adapters: Mapping[str, str | Path]) -> dict[str, int]:
        """Adapter name -> its index in the model (one per distinct folder, whichever names it)."""
        indexes = {}
        for adapter, folder in adapters.items():
            path = Path(folder).expanduser()
            check_adapter_folder(str(adapter), path)
            path = path.resolve()
            if path not in self._adapter_folders:
                if self._model is not None:
                    raise ValueError(f"{self.name}: adapter {adapter!r} added after the model was loaded")
                self._adapter_folders.append(path)
            indexes[str(adapter)] = self._adapter_folders.index(path)
        return indexes

    async def aclose(self) -> None:
        """Fail queued requests, let the running rows finish, stop the model threads and free the model.

        Requests not yet decoding (queued, or prefilled and waiting for a slot) fail as closed.
        """
        with self._queue:
            self._closed = True
            queued, self._pending = list(self._pending), deque()
            self._queue.notify_all()
        for request in queued:
            _deliver(request, BackendError(f"{self.name}: backend closed"))
        threads, self._threads = [self._threads.get("prefill"), self._threads.get("decode")], {}
        for thread in threads:  # the prefill thread first: the decode thread waits for its last row
            if thread is not None:
                await asyncio.to_thread(thread.join)
        with self._load_lock:
            self._model = self._tokenizer = None
            if self._prefixes is not None:
                self._prefixes.clear()
        gc.collect()

    def _check(self, params: SamplingParams, model: str | None, role: TransformersLocalBackend | TransformersRole) -> int | None:
        """The adapter ``model`` names for ``role`` (None: the base model); raises ``RequestRejected`` for bad requests."""
        if model is not None and model not in self._aliases and model != role.name and model not in role.adapters:
            known = sorted(self._aliases | {role.name} | set(role.adapters))
            raise RequestRejected(f"{role.name}: serves only {known}, not model {model!r}")
        if params.max_tokens < 1:
            raise RequestRejected(f"max_tokens must be at least 1, got {params.max_tokens}")
        if params.temperature is not None and params.temperature < 0:
            raise RequestRejected(f"temperature must not be negative, got {params.temperature}")
        if params.top_p is not None and not 0 < params.top_p <= 1:
            raise RequestRejected(f"top_p must be in (0, 1], got {params.top_p}")
        return role.adapters.get(model) if model is not None else None

    # ----------------------------------------------------------------- the model threads

    def _load(self) -> None:
        """Load tokenizer and model once; safe to call from any thread."""
        with self._load_lock:
            if self._model is not None:
                return
            if self._closed:
                raise BackendError(f"{self.name}: backend is closed")
            started = time.perf_counter()
            import_torch()
            from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
            from transformers.cache_utils import DynamicLayer

            folder = self.folder if self.folder is not None else embedded_model_dir()
            label = f"{self.name} ({', '.join(self._role_names)})" if self._role_names else self.name  # who waits for it
            load_log.info("%s: loading %s", label, folder)
            tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", local_files_only=True)
            if not getattr(tokenizer, "chat_template", None):
                raise BackendError(f"{folder}: the tokenizer has no chat template")
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype or "auto", local_files_only=True)
            if self._adapter_folders:
                load_log.info("%s: attaching %d LoRA adapters", self.name, len(self._adapter_folders))
                try:
                    model = attach_adapters(model, self._adapter_folders)
                except ImportError:
                    raise BackendError(f"{self.name}: LoRA adapters need peft: pip install esc-eval[local]") from None
            model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' wrapper of PreTrainedModel.to loses the method's binding
            self.packed_linears = pack_if_sound(model) if self.packed_weights else 0
            eos = model.generation_config.eos_token_id
            eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
            if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
                eos_ids.append(tokenizer.eos_token_id)
            if not eos_ids:
                raise BackendError(f"{folder}: neither the generation config nor the tokenizer names an end token")
            self._eos_ids = eos_ids
            self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
            self._plain_cache = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
            if self._prefixes is not None and not self._plain_cache:
                log.info("%s: %s keeps more than plain per-token keys and values; prefix reuse is off", self.name, folder)
                self._prefixes = None
            self._tokenizer, self._model = tokenizer, model
            self.load_seconds = time.perf_counter() - started
            kernels = ", linear layers packed for oneDNN" if self.packed_linears else ""
            load_log.info("%s: loaded %s (%s%s) in %.1f s", label, folder, model.dtype, kernels, self.load_seconds)

    def _prefill_loop(self) -> None:
        """The prefill thread: turn queued requests into ready rows, ahead of the decode thread.

        It prefills while fewer than ``max_batch`` rows wait for a slot (so a row is ready
        the moment one frees), and returns once the backend is closed.
        """
        while True:
            with self._queue:
                while not self._closed and (not self._pending or len(self._ready) >= self.max_batch):
                    self._queue.wait()
                if self._closed:
                    return
                request = self._pending.popleft()
                self._prefilling = True
            try:
                if not request.abandoned():
                    self._load()
                    self._set_threads(self.prefill_threads)
                    ready = self._prefill(request)
                    if ready is not None:
                        with self._queue:
                            self._ready.append(ready)
            except Exception as exc:  # a failed load or prefill fails its request, never the thread
                self._fail([request], exc)
            finally:
                with self._queue:
                    self._prefilling = False
                    self._queue.notify_all()

    def _decode_loop(self) -> None:
        """The decode thread: steps over the running rows, splicing in ready rows and retiring finished ones between steps.

        It never waits on the event loop: answers go to their callers' loops as soon as
        their row ends. It returns once the backend is closed and its last running row is
        done; rows still waiting for a slot then fail as closed.
        """
        batch: RunningBatch | SoloBatch | None = None
        while True:
            with self._queue:
                while not self._ready and not batch:
                    if self._closed and not self._prefilling:
                        return
                    self._queue.wait()
                if self._closed:
                    joining, unstarted = [], list(self._ready)
                    self._ready.clear()
                else:
                    if batch is None:  # the model is loaded: a row is ready
                        self._set_threads(self.threads)
                        batch = RunningBatch(self._model, self.max_batch) if self._plain_cache else SoloBatch(self._model)
                    joining = [self._ready.popleft() for _ in range(min(batch.max_rows - len(batch), len(self._ready)))]
                    unstarted = []
                self._queue.notify_all()
            self._fail([row.request for row, _ in unstarted], BackendError("backend closed"))
            try:
                for row, state in joining:
                    if row.request.abandoned():
                        continue
                    if isinstance(batch, RunningBatch):
                        batch.add(row, state, row.request.params.max_tokens - len(row.tokens))
                    elif isinstance(batch, SoloBatch):  # rows join only once a batch exists
                        batch.add(row, state)
                if batch:
                    self._step(batch)
            except Exception as exc:  # fails the rows it concerns, never the thread
                running = batch.members if batch is not None else []
                self._fail([row.request for row in running] + [row.request for row, _ in joining], exc)
                batch = None

    @staticmethod
    def _set_threads(count: int) -> None:
        """This thread's torch intra-op threads (an OpenMP setting of the calling thread)."""
        torch = import_torch()
        if count and torch.get_num_threads() != count:
            torch.set_num_threads(count)

    def _fail(self, requests: list[_Request], exc: Exception) -> None:
        if not requests:
            return
        detail = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
        log.warning("%s: %s", self.name, detail)
        for request in requests:
            _deliver(request, BackendError(f"{self.name}: {detail}"))

    def _prefill(self, request: _Request) -> tuple[_Row, Any] | None:
        """Prefill one prompt alone (reusing its longest cached prefix) and pick its first token.

        Returns the row with its state to join the running batch (per layer keys and values,
        or the model's own cache for a ``SoloBatch``), or None when the first token already ended it.
        """
        import torch
        from transformers import DynamicCache

        tokenizer = self._tokenizer
        text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        prompt = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        space = request.adapter
        with torch.inference_mode(), row_adapters([space]):
            if self._plain_cache:
                entry, reused = self._prefixes.longest(prompt, len(prompt) - 1, space) if self._prefixes is not None else (None, 0)
                past = DynamicCache(config=self._model.config)
                layers = [preallocated_layer()(len(prompt)) for _ in past.layers]  # ours: transformers types past.layers as any kind
                past.layers = layers
                if entry is not None:
                    for layer, (keys, values) in zip(layers, entry.layers):
                        layer.update(keys[:, :, :reused], values[:, :, :reused])
            else:
                past, reused = DynamicCache(config=self._model.config), 0
            output = self._model(input_ids=torch.tensor([prompt[reused:]], device=self.device), past_key_values=past, use_cache=True,
                                 logits_to_keep=1)
        self.reused_tokens += reused
        self.prefilled_tokens += len(prompt) - reused
        sampler = RowSampler(request.params, self.device)
        row = _Row(request, len(prompt), sampler, [sampler.pick(output.logits[0, -1])])
        state: Any = past
        if self._plain_cache:
            state = [(layer.keys, layer.values) for layer in layers]
            if self._prefixes is not None:
                self._prefixes.add(prompt, state, space)
        return None if self._finish(row) else (row, state)

    def _step(self, batch: RunningBatch | SoloBatch) -> None:
        """Drop abandoned rows, feed every row its last token, pick the next ones, and retire finished rows."""
        import torch

        batch.remove([index for index, row in enumerate(batch.members) if row.request.abandoned()])
        if not batch:
            return
        rows: list[_Row] = batch.members
        with torch.inference_mode(), row_adapters([row.request.adapter for row in rows]):
            logits = batch.step([row.tokens[-1] for row in rows])
            chosen = next_tokens(logits, [row.sampler for row in rows])
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(rows))
        done = []
        for index, (row, token) in enumerate(zip(rows, chosen)):
            row.tokens.append(token)
            if self._finish(row):
                done.append(index)
        batch.remove(done)

    def _finish(self, row: _Row) -> bool:
        """Deliver the row's answer if it ended (an end token, or its ``max_tokens``); whether it did."""
        tokens, request = row.tokens, row.request
        ended = tokens[-1] in self._eos_ids
        if not ended and len(tokens) < request.params.max_tokens:
            return False
        text = self._tokenizer.decode(tokens[:-1] if ended else tokens, skip_special_tokens=True).strip()
        if not text:
            _deliver(request, EmptyReply(f"{self.name}: empty reply after {len(tokens)} tokens"))
        else:
            latency = time.perf_counter() - request.enqueued
            _deliver(request, Completion(text, row.prompt_tokens, len(tokens), latency, request.label, usage="counted"))
        return True


class TransformersRole:
    """One role's ``ChatBackend`` on a shared ``TransformersLocalBackend`` (``TransformersLocalBackend.role``).

    Attributes:
        backend: the shared backend (model, batch, prefix cache, load and decode counters).
        adapters: adapter name -> index in the shared model; ``complete(model=NAME)`` picks one.
        default_model: the adapter of requests that name no model (a seeker's own), or None: the base model.
        stats: this role's own counters.
    """

    def __init__(self, backend: TransformersLocalBackend, name: str, adapters: dict[str, int], default_model: str | None):
        if default_model is not None and default_model not in adapters:
            raise ValueError(f"default adapter {default_model!r} is not one of {', '.join(sorted(adapters)) or 'no adapters'}")
        self.backend, self.name, self.adapters, self.default_model = backend, name, adapters, default_model
        self.stats = BackendStats(name)

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        """As ``TransformersLocalBackend.complete``, with this role's names and adapters."""
        return await self.backend.serve(messages, params, model, role=self)

    async def aclose(self) -> None:
        """Nothing of its own to free: the shared backend is closed by its owner (the pool's ``Shared``)."""


def _deliver(request: _Request, outcome: Completion | BackendError) -> None:
    """Settle a request's future on its own event loop (from any thread), unless its caller gave up."""

    def settle() -> None:
        if request.future.done():
            return
        if isinstance(outcome, Completion):
            request.future.set_result(outcome)
        else:
            request.future.set_exception(outcome)

    try:
        request.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits for this answer
        pass


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


__all__ = ["EMBEDDED_NAME", "TransformersLocalBackend", "TransformersRole", "cache_root", "embedded_gguf", "embedded_model_dir"]
