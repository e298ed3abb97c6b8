"""In-process judging with a local base model plus LoRA adapters, one per dimension (peft).

ESC-RANK scores each dimension with its own LoRA adapter on one base model. This backend
does the same in process: it loads the base model once, attaches every adapter of
``adapters`` (name -> folder, e.g. those ``esc-eval judge train`` writes: ``fluency_en``,
``empathic_en``, ...) and answers ``complete(model="fluency_en")`` with that adapter
active. A request for the base model's name (or no name) runs with every adapter
disabled. Any other name raises ``RequestRejected``: a dimension never silently falls
back to an unadapted model.

Requests run one at a time in the backend's own thread (switching adapters between
requests is free; a judge prompt on a 135M model takes well under a second), so the
event loop never blocks on torch.

Config (a ``[judge]`` section; ``lora`` is ``EndpointConfig.lora``, the field the vLLM
backend uses for the same adapters)::

    [judge]
    backend = "transformers"
    model = "/path/to/base"                   # omit for the embedded SmolLM2
    profile = "default"
    lora = {fluency_en = "adapters/fluency_en", empathic_en = "adapters/empathic_en"}
    [judge.models]
    fluency = "fluency_{lang}"
    empathic = "empathic_{lang}"

A seeker trained by ``esc-eval seeker train`` is served the same way: ``[seeker]`` with
``lora = {seeker = "adapters/seeker"}``; the adapter named like the role answers that role's
requests, which name no model (``default_model``, set by ``esc_eval.agents.backends.role_adapter``).

Needs ``peft`` (``pip install esc-eval[train]``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from esc_eval.agents.backends.base import LOADING_LOG, BackendError, BackendStats, EmptyReply, RequestRejected
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams

load_log = logging.getLogger(LOADING_LOG)

ADAPTER_CONFIG = "adapter_config.json"


def adapters_in(folder: str | Path) -> dict[str, Path]:
    """Adapter name -> folder for every subfolder of ``folder`` holding an ``adapter_config.json``."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of LoRA adapters")
    return {child.name: child for child in sorted(root.iterdir()) if (child / ADAPTER_CONFIG).is_file()}


def resolve_base(model: str | Path | None) -> Path:
    """A base model folder: the given one, or the embedded SmolLM2 for ``None`` / ``"embedded"``."""
    from esc_eval.agents.backends.embedded import EMBEDDED_ALIASES, embedded_model_dir

    if model is None or str(model) in EMBEDDED_ALIASES:
        return embedded_model_dir()
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise ValueError(f"model {str(model)!r}: not a folder (a local transformers model folder is required)")
    return folder


class LoraLocalBackend:
    """A ``ChatBackend``: one local base model, several LoRA adapters, ``complete(model=ADAPTER)`` picks one.

    Args:
        model: base model folder; ``None`` or ``"embedded"`` means the embedded SmolLM2-135M-Instruct.
        adapters: adapter name -> adapter folder (``adapter_config.json`` + weights).
        name: label for counters, and a model name that selects the base model.
        device: torch device.
        threads: torch intra-op threads (process-wide); ``None`` leaves torch's setting.
        default_model: the adapter a request that names no model gets (a seeker served by its own
            adapter: ``ChatAgent`` requests name none); ``None``: such requests get the base model.

    Examples:
        >>> backend = LoraLocalBackend(None, adapters=adapters_in("adapters/"))    # doctest: +SKIP
        >>> await backend.complete(messages, SamplingParams(max_tokens=4), model="fluency_en")  # doctest: +SKIP
    """

    def __init__(self, model: str | Path | None = None, *, adapters: Mapping[str, str | Path], name: str = "lora-local",
                 device: str = "cpu", threads: int | None = None, default_model: str | None = None):
        if not adapters:
            raise ValueError("LoraLocalBackend needs at least one adapter (name -> folder)")
        self.adapters = {str(k): Path(v).expanduser() for k, v in adapters.items()}
        for adapter, folder in self.adapters.items():
            if not (folder / ADAPTER_CONFIG).is_file():
                raise ValueError(f"adapter {adapter!r}: {folder} has no {ADAPTER_CONFIG}")
        if default_model is not None and default_model not in self.adapters:
            raise ValueError(f"default adapter {default_model!r} is not one of {', '.join(sorted(self.adapters))}")
        self.model_arg, self.default_model = model, default_model
        self.name, self.device, self.threads = name, device, threads
        self.stats = BackendStats(name)
        self.load_seconds: float | None = None
        self._base_names = {name, "base", "embedded" if model is None else str(model)}
        if model is None:
            self._base_names.add("smollm2-135m-instruct")
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-generate")
        self._closed = False

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        """Generate with adapter ``model`` (or the bare base model); raises ``RequestRejected`` for an unknown name."""
        if self._closed or self._executor is None:
            raise BackendError(f"{self.name}: backend is closed")
        model = model or self.default_model
        if model is not None and model not in self.adapters and model not in self._base_names:
            error = RequestRejected(f"{self.name}: no adapter {model!r} (adapters: {', '.join(sorted(self.adapters))})")
            self.stats.fault(error.kind, str(error), retried=False)
            raise error
        if params.max_tokens < 1:
            raise RequestRejected(f"max_tokens must be at least 1, got {params.max_tokens}")
        adapter = model if model in self.adapters else None
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]
        started = time.perf_counter()
        self.stats.in_flight += 1
        try:
            text, prompt_tokens, completion_tokens = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._generate, chat, params, adapter)
        except BackendError as exc:
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        except Exception as exc:
            error = BackendError(f"{self.name}: {type(exc).__name__}: {exc}")
            self.stats.fault(error.kind, str(error), retried=False)
            raise error from exc
        finally:
            self.stats.in_flight -= 1
        if not text.strip():
            error = EmptyReply(f"{self.name}: empty reply after {completion_tokens} tokens")
            self.stats.fault(error.kind, str(error), retried=False)
            raise error
        completion = Completion(text, prompt_tokens, completion_tokens, time.perf_counter() - started, model or self.name)
        self.stats.done(completion)
        return completion

    async def aclose(self) -> None:
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        with self._lock:
            self._model = self._tokenizer = None
        gc.collect()

    # -- the model thread ---------------------------------------------------------------

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            from esc_eval.agents.backends.torch_import import import_torch

            torch = import_torch()
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.threads:
                torch.set_num_threads(self.threads)
            folder = resolve_base(self.model_arg)
            load_log.info("%s: loading %s with %d adapters", self.name, folder, len(self.adapters))
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            base = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", local_files_only=True)
            names = list(self.adapters)
            model = PeftModel.from_pretrained(base, str(self.adapters[names[0]]), adapter_name=names[0])
            for adapter in names[1:]:
                model.load_adapter(str(self.adapters[adapter]), adapter_name=adapter)
            model.to(self.device).eval()
            self._tokenizer, self._model = tokenizer, model
            self.load_seconds = time.perf_counter() - started
            load_log.info("%s: loaded %s with %d adapters in %.1f s", self.name, folder, len(names), self.load_seconds)

    def _generate(self, chat: list[dict[str, str]], params: SamplingParams, adapter: str | None) -> tuple[str, int, int]:
        self._load()
        import contextlib

        import torch

        tokenizer, model = self._tokenizer, self._model
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        eos = model.generation_config.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if isinstance(eos, int) else eos[0])
        sample = bool(params.temperature)
        options: dict[str, Any] = {"max_new_tokens": params.max_tokens, "do_sample": sample, "pad_token_id": pad}
        if sample:
            options["temperature"] = params.temperature
            if params.top_p is not None:
                options["top_p"] = params.top_p
            if params.seed is not None:
                torch.manual_seed(params.seed)
        if adapter is not None:
            model.set_adapter(adapter)
            context: Any = contextlib.nullcontext()
        else:
            context = model.disable_adapter()
        with context, torch.inference_mode():
            output = model.generate(**inputs, **options)
        new = output[0, inputs["input_ids"].shape[1]:].tolist()
        stops = set([eos] if isinstance(eos, int) else list(eos or [])) | ({tokenizer.eos_token_id} - {None})
        end = next((i for i, token in enumerate(new) if token in stops), None)
        content = new if end is None else new[:end]
        return (tokenizer.decode(content, skip_special_tokens=True).strip(), int(inputs["input_ids"].shape[1]),
                len(new) if end is None else end + 1)


__all__ = ["LoraLocalBackend", "adapters_in", "resolve_base"]
