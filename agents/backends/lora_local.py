"""LoRA adapters on the local backend's one model, chosen per batch row (peft reads them, this module applies them).

ESC-RANK scores each dimension with its own LoRA adapter on one base model, and a seeker
trained by ``esc-eval seeker train`` is the base model plus its adapter. The
``transformers`` backend serves all of them from one loaded copy of the base model,
continuously batched: ``attach_adapters`` loads every adapter with peft, then replaces
each adapted linear layer by an ``AdaptedLinear`` that computes the base layer's product
for the whole batch and adds each row's own adapter (or none) to that row:
``base(x) + lora_B(lora_A(x)) * scaling``, the very operations of peft's LoRA layer, so a
row gets peft's answer (the tests compare greedy answers with peft's ``generate``). The
batch's rows are told to the layers per thread (``row_adapters``): the prefill and decode
threads run the same layers at once.

The adapters' ``lora_A``/``lora_B`` layers are ordinary ``torch.nn.Linear`` modules, so
``pack_linears`` packs them too (bit-identical per row in any batch), and an adapted
layer's base still shares its siblings' packed product (it is the ``base`` attribute).

Served: plain LoRA on linear layers (any rank, alpha, rsLoRA scaling, layer subset, bias).
Refused with a clear error: DoRA and other LoRA variants, adapters of embeddings or
convolutions, ``modules_to_save`` and trainable tokens (they replace whole modules per adapter).

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

A seeker is served the same way: ``[seeker]`` with ``lora = {seeker = "adapters/seeker"}``;
the adapter named like the role answers that role's requests, which name no model
(``esc_eval.agents.backends.role_adapter``). Needs ``peft`` (``pip install esc-eval[local]``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"

_rows = threading.local()  # per thread: the adapter index of each row of the forward being run (None: the base model)


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


def check_adapter_folder(name: str, folder: Path) -> None:
    """Raise ``ValueError`` naming the adapter when ``folder`` holds no adapter."""
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ValueError(f"adapter {name!r}: {folder} has no {ADAPTER_CONFIG}")


@contextmanager
def row_adapters(rows: Sequence[int | None]) -> Iterator[None]:
    """Within the block, this thread's forward passes give batch row ``i`` adapter ``rows[i]`` (None: none)."""
    previous = getattr(_rows, "value", None)
    _rows.value = list(rows) if any(index is not None for index in rows) else None
    try:
        yield
    finally:
        _rows.value = previous


def attach_adapters(model: Any, folders: Sequence[Path]) -> Any:
    """Load the LoRA adapters in ``folders`` onto ``model`` (in place); adapter ``i`` is ``row_adapters``' index ``i``.

    Returns ``model`` itself (a transformers model, not a peft wrapper), each adapted
    linear layer replaced by an ``AdaptedLinear``.

    Raises:
        ValueError: an adapter uses something only peft's own layers compute (named in the message).
    """
    import torch
    from peft import PeftModel
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    names = [f"adapter{index}" for index in range(len(folders))]
    # autocast off: the adapters take the model's dtype (bfloat16 too), as the rows they add to
    wrapped = PeftModel.from_pretrained(model, str(folders[0]), adapter_name=names[0], autocast_adapter_dtype=False)
    for name, folder in zip(names[1:], folders[1:]):
        wrapped.load_adapter(str(folder), adapter_name=name, autocast_adapter_dtype=False)
    for name, folder in zip(names, folders):
        config = wrapped.peft_config[name]
        for field in ("modules_to_save", "trainable_token_indices"):
            if getattr(config, field, None):
                raise ValueError(f"adapter {folder}: {field} is not served by the transformers backend (plain LoRA only)")
    inner: Any = wrapped.base_model.model
    for path, module in list(inner.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        if not isinstance(module, LoraLinear) or not isinstance(module.base_layer, torch.nn.Linear):
            raise ValueError(f"adapters {', '.join(map(str, folders))}: {path} is a {type(module.base_layer).__name__}; "
                             "the transformers backend adapts linear layers only")
        deltas = {}
        for index, name in enumerate(names):
            if name not in module.lora_A:
                continue
            if name in getattr(module, "lora_variant", {}):
                raise ValueError(f"adapter {folders[index]}: {path} uses a LoRA variant (DoRA, ...); plain LoRA only")
            deltas[index] = (module.lora_A[name], module.lora_B[name], module.scaling[name])
        inner.set_submodule(path, adapted_linear()(module.base_layer, deltas))
    return inner


@functools.cache
def adapted_linear() -> type:
    """The ``AdaptedLinear`` class (defined on first use: torch is imported only when a model is loaded)."""
    import torch

    class AdaptedLinear(torch.nn.Module):
        """A linear layer (``base``) plus LoRA adapters, each added only to the rows ``row_adapters`` gives it."""

        def __init__(self, base: torch.nn.Module, deltas: Mapping[int, tuple[torch.nn.Module, torch.nn.Module, float]]):
            super().__init__()
            self.base = base
            self.lora_A = torch.nn.ModuleDict({str(index): a for index, (a, _, _) in deltas.items()})
            self.lora_B = torch.nn.ModuleDict({str(index): b for index, (_, b, _) in deltas.items()})
            self.scaling = {str(index): scaling for index, (_, _, scaling) in deltas.items()}

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            result = self.base(inputs)
            rows = getattr(_rows, "value", None)
            if rows is None:
                return result
            if len(rows) != inputs.shape[0]:
                raise RuntimeError(f"row_adapters names {len(rows)} rows, the batch has {inputs.shape[0]}")
            for key in sorted({str(index) for index in rows if index is not None} & set(self.scaling)):
                picked = [row for row, index in enumerate(rows) if index is not None and str(index) == key]
                lora_a, lora_b, scaling = self.lora_A[key], self.lora_B[key], self.scaling[key]
                if len(picked) == len(rows):  # peft's own expression, on every row
                    result = result + lora_b(lora_a(inputs)) * scaling
                else:  # the same per row: each of its elements gets the same sum
                    at = torch.tensor(picked, device=inputs.device)
                    result = result.index_add(0, at, lora_b(lora_a(inputs[at])) * scaling)
            return result

        def extra_repr(self) -> str:
            return f"adapters {sorted(self.scaling)}"

    return AdaptedLinear


__all__ = ["ADAPTER_CONFIG", "adapted_linear", "adapters_in", "attach_adapters", "check_adapter_folder", "resolve_base",
           "row_adapters"]
