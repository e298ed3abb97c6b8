"""In-process chat completions from a local transformers model, micro-batched.

``TransformersLocalBackend`` serves one causal LM folder (by default the embedded
SmolLM2-135M-Instruct, see ``embedded_model_dir``) to many concurrent callers.
Requests are queued; one worker task takes up to ``max_batch`` of them (waiting at
most ``max_wait`` seconds after the oldest arrived), renders each through the
tokenizer's chat template, pads on the left and runs a single ``generate`` in a
dedicated thread, so the event loop never blocks on torch.

Every request in a batch keeps its own decoding settings: greedy when
``temperature`` is None or 0, otherwise sampling with ``temperature``/``top_p`` from
a ``torch.Generator`` of its own, seeded with ``params.seed``. Requests therefore
never need to agree to share a batch, and (in float32, below) a seeded request
draws the same tokens whatever else was batched with it. A row that reaches its own
``max_tokens`` is given the end token while the rest of the batch goes on.

Prefix cache: past prompts' keys and values are reused by later prompts that extend them
(``prefix_cache_mb``; ``agents.backends.kv_cache`` says how and what it saved).


Numerics: the embedded folder is float32. In float32, greedy answers were measured
identical whether a prompt is generated alone or left-padded in a batch (0 of 72
differed, batch sizes 2-12, 48 tokens), and whether its prefix came from the cache or
not (0 of 32 differed: 8 episodes, 2 rounds, 48 tokens). In bfloat16 about half of
the batched answers diverged after a few dozen tokens. bfloat16 is faster in large batches on CPUs with AMX;
pass ``dtype="bfloat16"`` to trade reproducibility for that.

CPU threads: torch uses ``threads`` intra-op threads (default: the CPUs this
process may use; ``torch.set_num_threads`` is process-wide). Before torch's first
import this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it: with
spinning OpenMP waiters, generation on 2 shared cores collapsed up to 10x whenever
anything else ran (see ``_import_torch``).

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.backends.base import LOADING_LOG, BackendError, BackendStats, EmptyReply, RequestRejected
from agents.backends.embedded import EMBEDDED_ALIASES, EMBEDDED_NAME, cache_root, embedded_gguf, embedded_model_dir
from agents.backends.kv_cache import MIN_SHARED_PREFIX, Prefix, PrefixCache, batch_kv, common_prefix, preallocated_layer
from agents.backends.torch_import import import_torch
from agents.messages import ChatMessage, Completion, SamplingParams

log = logging.getLogger(__name__)
load_log = logging.getLogger(LOADING_LOG)


# --------------------------------------------------------------------------- the backend


@dataclass(eq=False)
class _Request:
    messages: list[dict[str, str]]
    params: SamplingParams
    future: asyncio.Future[Completion]
    label: str
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class _Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int


class TransformersLocalBackend:
    """A ``ChatBackend`` that runs a local transformers model in this process, micro-batched.

    Args:
        model: a local transformers folder (config, weights, tokenizer with a chat
            template); ``None``, ``"embedded"`` or ``"smollm2-135m-instruct"`` mean the
            embedded SmolLM2-135M-Instruct (``embedded_model_dir()``, converted on first use).
        max_batch: requests per ``generate`` call, at most.
        max_wait: seconds a batch waits for company after its oldest request arrived.
        device: torch device for the model and inputs.
        name: label for counters and ``Completion.model``.
        dtype: torch dtype name; ``None`` keeps the folder's own (float32 for the embedded model).
        threads: torch intra-op threads; ``None`` means the CPUs this process may use.
        prefix_cache_mb: memory for past prompts' keys and values (see the module docstring);
            0 turns prefix reuse off.

    The model is loaded once, lazily, in the backend's own thread (never on the event
    loop). ``complete(model=...)`` accepts only names of this one model (``name``, the
    folder path as given, or ``"embedded"``/``"smollm2-135m-instruct"``); any
    other name raises ``RequestRejected`` rather than silently answering with the
    wrong model. Use from one event loop at a time.

    Attributes:
        stats: the counters every backend keeps.
        batches_run: ``generate`` calls made so far.
        largest_batch: the most requests one ``generate`` call served.
        load_seconds: how long loading the model took (None before it is loaded).
        prefilled_tokens: prompt tokens the model computed (pads not counted).
        reused_tokens: prompt tokens whose keys and values came from the prefix cache instead.

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
        max_wait: float = 0.01,
        device: str = "cpu",
        name: str = "local",
        dtype: str | None = None,
        threads: int | None = None,
        prefix_cache_mb: float = 512,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must not be negative, got {prefix_cache_mb}")
        self.folder: Path | None = None
        if model is not None and str(model) not in EMBEDDED_ALIASES:
            self.folder = Path(model).expanduser()
            if not self.folder.is_dir():
                raise ValueError(f"model {str(model)!r}: not a folder (a local transformers model folder is required)")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.device = device
        self.name = name
        self.dtype = dtype
        self.threads = threads if threads is not None else _usable_cpus()
        self.stats = BackendStats(name)
        self.batches_run = 0
        self.largest_batch = 0
        self.load_seconds: float | None = None
        self.prefilled_tokens = 0
        self.reused_tokens = 0
        self._prefixes: PrefixCache | None = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb else None
        self._aliases = {name} | (set(EMBEDDED_ALIASES) if self.folder is None else {str(model), str(self.folder)})
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos_ids: list[int] = []
        self._pad_id = 0
        self._plain_cache = False
        self._load_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[_Request] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ----------------------------------------------------------------- ChatBackend

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        """Queue one chat for the next batch and wait for its answer.

        ``Completion.latency`` counts from this call to the answer (queueing included);
        ``completion_tokens`` counts the end-of-turn token when the model produced one.

        Raises:
            RequestRejected: an unknown ``model`` name or invalid sampling values.
            EmptyReply: the model produced only whitespace or special tokens.
            BackendError: loading or generation failed, or the backend is closed.
        """
        if self._closed:
            raise BackendError(f"{self.name}: backend is closed")
        try:
            self._check(params, model)
        except RequestRejected as exc:
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        loop = asyncio.get_running_loop()
        self._ensure_worker(loop)
        request = _Request([{"role": m["role"], "content": m["content"]} for m in messages], params, loop.create_future(), model or self.name)
        self._pending.append(request)
        assert self._wake is not None
        self._wake.set()
        self.stats.in_flight += 1
        try:
            completion = await request.future
        except BackendError as exc:
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        finally:
            self.stats.in_flight -= 1
        self.stats.done(completion)
        return completion

    async def aclose(self) -> None:
        """Fail queued requests, let the running batch finish, stop the worker and free the model."""
        self._closed = True
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(BackendError(f"{self.name}: backend closed"))
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            if self._loop is asyncio.get_running_loop():
                if self._wake is not None:
                    self._wake.set()
                await worker
            elif self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(worker.cancel)
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        with self._load_lock:
            self._model = self._tokenizer = None
            if self._prefixes is not None:
                self._prefixes.clear()
        gc.collect()

    # ----------------------------------------------------------------- batching

    def _check(self, params: SamplingParams, model: str | None) -> None:
        if model is not None and model not in self._aliases:
            raise RequestRejected(f"{self.name}: serves only {sorted(self._aliases)}, not model {model!r}")
        if params.max_tokens < 1:
            raise RequestRejected(f"max_tokens must be at least 1, got {params.max_tokens}")
        if params.temperature is not None and params.temperature < 0:
            raise RequestRejected(f"temperature must not be negative, got {params.temperature}")
        if params.top_p is not None and not 0 < params.top_p <= 1:
            raise RequestRejected(f"top_p must be in (0, 1], got {params.top_p}")

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        if self._loop is not None and self._loop is not loop and self._loop.is_running() and not self._loop.is_closed():
            raise BackendError(f"{self.name}: already serving another running event loop")
        if self._loop is not loop:  # a previous loop ended: its queued requests died with it
            self._pending.clear()
        self._loop = loop
        self._wake = asyncio.Event()
        self._worker = loop.create_task(self._serve_forever(), name=f"{self.name}-batcher")

    async def _serve_forever(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            if not self._pending:
                if self._closed:
                    return
                wake.clear()
                await wake.wait()
                continue
            deadline = self._pending[0].enqueued + self.max_wait
            while len(self._pending) < self.max_batch and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except TimeoutError:
                    break
            batch: list[_Request] = []
            while self._pending and len(batch) < self.max_batch:
                request = self._pending.popleft()
                if not request.future.done():  # skip callers that gave up
                    batch.append(request)
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-generate")
        try:
            answers = await loop.run_in_executor(self._executor, self._generate, [r.messages for r in batch], [r.params for r in batch])
        except Exception as exc:  # one failed generate fails its batch, never the worker
            detail = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(BackendError(f"{self.name}: {detail}"))
            return
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        finished = time.perf_counter()
        for request, answer in zip(batch, answers):
            if request.future.done():
                continue
            if not answer.text.strip():
                request.future.set_exception(
                    EmptyReply(f"{self.name}: empty reply after {answer.completion_tokens} tokens")
                )
                continue
            request.future.set_result(
                Completion(answer.text, answer.prompt_tokens, answer.completion_tokens, finished - request.enqueued, request.label)
            )

    # ----------------------------------------------------------------- the model thread

    def _load(self) -> None:
        """Load tokenizer and model once; safe to call from any thread."""
        with self._load_lock:
            if self._model is not None:
                return
            if self._closed:
                raise BackendError(f"{self.name}: backend is closed")
            started = time.perf_counter()
            torch = import_torch()
            from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
            from transformers.cache_utils import DynamicLayer

            if self.threads and torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            folder = self.folder if self.folder is not None else embedded_model_dir()
            load_log.info("%s: loading %s", self.name, folder)
            tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", local_files_only=True)
            if not getattr(tokenizer, "chat_template", None):
                raise BackendError(f"{folder}: the tokenizer has no chat template")
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype or "auto", local_files_only=True)
            model.to(self.device).eval()
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
            load_log.info("%s: loaded %s (%s) in %.1f s", self.name, folder, model.dtype, self.load_seconds)

    def _generate(self, chats: list[list[dict[str, str]]], params: list[SamplingParams]) -> list[_Answer]:
        """One left-padded ``generate`` over the batch, reusing cached prompt prefixes; runs in the backend's thread."""
        self._load()
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        tokenizer, model = self._tokenizer, self._model
        texts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]
        prompts = [tuple(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        with torch.inference_mode():
            if self._prefixes is not None:
                self._prefill_shared(prompts)
                hits = [self._prefixes.longest(prompt, len(prompt) - 1) for prompt in prompts]
            else:
                hits = [(None, 0)] * len(prompts)
            # Per row: [left pad][reused prefix, as cache][gap pad][suffix, as input]; every row's last token is
            # in the last column, and position ids (the mask's cumsum) are what the row would get alone.
            reused = [count for _, count in hits]
            cached = max(reused)
            width = cached + max(len(prompt) - count for prompt, count in zip(prompts, reused))
            input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(prompts), width), dtype=torch.long)
            for row, (prompt, count) in enumerate(zip(prompts, reused)):
                ids, suffix = torch.tensor(prompt), len(prompt) - count
                input_ids[row, cached - count:cached], mask[row, cached - count:cached] = ids[:count], 1
                input_ids[row, width - suffix:], mask[row, width - suffix:] = ids[count:], 1
            budgets = [p.max_tokens for p in params]
            past = self._batch_cache(hits, cached, width + max(budgets))
            self.reused_tokens += sum(reused)
            self.prefilled_tokens += sum(len(prompt) for prompt in prompts) - sum(reused)

            rules = _RowRules(params, width, self._eos_ids[0], self.device)
            config = GenerationConfig(
                max_new_tokens=max(budgets), do_sample=False, eos_token_id=self._eos_ids, pad_token_id=self._pad_id,
                return_dict_in_generate=True,
            )
            processors = LogitsProcessorList([rules]) if rules.needed else None
            output = model.generate(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), past_key_values=past,
                generation_config=config, logits_processor=processors,
            )
            if self._prefixes is not None:
                for row, prompt in enumerate(prompts):
                    positions = mask[row].nonzero().squeeze(1).to(self.device)
                    layers = [
                        (layer.keys[row:row + 1, :, positions], layer.values[row:row + 1, :, positions])
                        for layer in output.past_key_values.layers
                    ]
                    self._prefixes.add(prompt, layers)
        new_tokens = output.sequences[:, width:].tolist()
        stops = set(self._eos_ids)
        answers = []
        for row, budget, prompt in zip(new_tokens, budgets, prompts):
            row = row[:budget]
            end = next((i for i, token in enumerate(row) if token in stops), None)
            content = row if end is None else row[:end]
            text = tokenizer.decode(content, skip_special_tokens=True).strip()
            answers.append(_Answer(text, len(prompt), len(row) if end is None else end + 1))
        return answers

    def _batch_cache(self, hits: list[tuple[Prefix | None, int]], cached: int, capacity: int) -> Any:
        """The batch's cache, holding the reused prefixes, with room for ``capacity`` positions.

        Growing a ``DynamicCache`` concatenates every layer's keys and values at every
        step (12% of a decode step's time); writing into room reserved up front does not.
        """
        from transformers import DynamicCache

        if not self._plain_cache:  # then prefix reuse is off too: nothing cached to pass
            return None
        past = DynamicCache(config=self._model.config)
        past.layers = [preallocated_layer()(capacity) for _ in past.layers]
        if cached:
            for layer, (keys, values) in zip(past.layers, batch_kv(hits, cached)):
                layer.update(keys, values)
        return past

    def _prefill_shared(self, prompts: list[tuple[int, ...]]) -> None:
        """Prefill once, alone, each prefix that several prompts of the batch share beyond what the cache holds.

        The batch then reuses it from the cache: e.g. the supporter's system prompt is
        computed once rather than once per episode, even in the very first batch.
        """
        import torch

        assert self._prefixes is not None
        shared = set()
        for index, prompt in enumerate(prompts):
            common = max(
                (common_prefix(prompt, other, len(prompt) - 1) for other in prompts[:index] + prompts[index + 1:]), default=0,
            )
            if common - self._prefixes.longest(prompt, common)[1] >= MIN_SHARED_PREFIX:
                shared.add(prompt[:common])
        for prefix in sorted(shared, key=len):  # shorter first: a longer one extends it
            entry, count = self._prefixes.longest(prefix, len(prefix))
            past = self._batch_cache([(entry, count)], count, len(prefix))
            # The base model alone: hidden states, no logits, are enough to fill the cache.
            self._model.base_model(input_ids=torch.tensor([prefix[count:]], device=self.device), past_key_values=past, use_cache=True)
            self._prefixes.add(prefix, [(layer.keys, layer.values) for layer in past.layers])
            self.prefilled_tokens += len(prefix) - count


class _RowRules:
    """Per-row decoding inside one greedy ``generate``: a ``LogitsProcessor``.

    For a sampled row it draws the next token itself (temperature, nucleus ``top_p``,
    the row's own seeded generator) and leaves only that token possible; for a row
    past its ``max_tokens`` it leaves only the end token. Greedy rows are untouched,
    so the greedy pick of ``generate`` then does the right thing for every row.
    """

    def __init__(self, params: list[SamplingParams], prompt_length: int, eos_id: int, device: str = "cpu"):
        import torch

        self.prompt_length = prompt_length
        self.eos_id = eos_id
        self.budgets = [p.max_tokens for p in params]
        self.rows: list[tuple[float, float | None, Any]] = []
        for p in params:
            if p.temperature:  # None or 0 means greedy
                generator = torch.Generator(device=device)
                if p.seed is None:
                    generator.seed()
                else:
                    generator.manual_seed(p.seed)
                self.rows.append((p.temperature, p.top_p, generator))
            else:
                self.rows.append((0.0, None, None))
        self.needed = len(set(self.budgets)) > 1 or any(g is not None for _, _, g in self.rows)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_length
        scores = scores.clone()
        for i, (temperature, top_p, generator) in enumerate(self.rows):
            if step >= self.budgets[i]:
                chosen = self.eos_id
            elif generator is not None:
                logits = scores[i].float() / temperature
                if top_p is not None and top_p < 1:
                    ordered, order = torch.sort(logits, descending=True)
                    probs = torch.softmax(ordered, dim=-1)
                    outside = (torch.cumsum(probs, dim=-1) - probs) >= top_p  # the top token always stays
                    ordered[outside] = -float("inf")
                    logits = torch.full_like(logits, -float("inf")).scatter(0, order, ordered)
                probs = torch.softmax(logits, dim=-1)
                chosen = int(torch.multinomial(probs, 1, generator=generator))
            else:
                continue
            scores[i] = -float("inf")
            scores[i, chosen] = 0.0
        return scores


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


__all__ = ["EMBEDDED_NAME", "TransformersLocalBackend", "cache_root", "embedded_gguf", "embedded_model_dir"]
