"""Linear layers on oneDNN with their weights packed once: faster at decode batch sizes, and batch-invariant.

A decode step multiplies a few rows (the running batch) by every weight matrix. torch's
default float32 CPU path (MKL ``sgemm``) packs each weight matrix again at every call and
parallelizes small row counts poorly: on a 2-core AVX2 AMD EPYC VM, SmolLM2-135M's
[1536 x 576] projection took 0.42 ms for 8 rows and its [49152 x 576] output layer 18 ms;
oneDNN with the weight reordered once (``torch.ops.mkldnn._reorder_linear_weight``, what
``torch.compile``'s CPU freezing uses) took 0.15 ms and 6.4 ms.

Just as important for reproducibility: MKL's result for a row depends on how many rows
are multiplied with it (row 0 alone and row 0 among 8 differed in the last bits), while
oneDNN's packed product gave every row bit-identical results for any row count (1-300)
and 1 or 2 threads, on that machine. So a prompt's keys and values are the same
prefilled with others or alone, and a row's logits the same in any batch. The results do
differ from MKL's in the last bits, so a greedy answer can differ from a vanilla
transformers model's where two tokens nearly tie.

``PACK_HINT`` rows is the batch size the packing is tuned for; a hint of 1 broke the
invariance above (a single row was computed differently), any hint from 2 to 128 kept it.

Sibling projections (``SIBLINGS``: an attention's query, key and value, an MLP's gate and
up projections) multiply the same input one after the other, so they share one packed
product of their stacked weights: five products a layer become two, and a decode step of
8 rows on the VM above took 3-5 % less time (fewer, larger parallel regions). The stacked
product gave each projection bit-identical results to its own packed product (every row
count tried, 1-100), so fusing changes no answer.

Both oneDNN calls are private torch operations (``torch.ops.mkldnn._reorder_linear_weight``
and ``_linear_pointwise``) whose schema may change in any torch release. So models are
packed only through ``pack_if_sound``: unless ``ESC_EVAL_PACKED=0`` turns packing off, it
runs ``kernel_fault`` once per process (both operations present, one packed product equal
to ``F.linear`` within rounding), and where that fails the model keeps torch's own linear
layers, with one warning naming why: slower, never wrong.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

PACKED_ENV = "ESC_EVAL_PACKED"
"""Environment variable: ``0`` keeps every model on torch's own linear layers."""
OPS = ("_reorder_linear_weight", "_linear_pointwise")
"""The private ``torch.ops.mkldnn`` operations packed layers call (``PackedLinear.pack`` and ``product``)."""
PACK_HINT = 16
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Attribute names of linear layers that transformers' decoders call one after the other on the same input."""

_last_product = threading.local()  # per thread: (group, input, outputs, parts not yet taken)


def packable(model: Any) -> bool:
    """Whether ``model`` is of a kind packing serves: float32 on the CPU, with oneDNN built into torch."""
    import torch

    return model.device.type == "cpu" and model.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def pack_if_sound(model: Any) -> int:
    """``pack_linears(model)`` if packing is on, ``model`` is ``packable`` and ``kernel_fault`` finds none; else 0.

    A failed self-test is logged once per process (a warning naming the fault); the model
    then runs on torch's own linear layers, as with ``ESC_EVAL_PACKED=0``.
    """
    if os.environ.get(PACKED_ENV, "1").strip() == "0" or not packable(model):
        return 0
    if kernel_fault() is not None:
        return 0
    return pack_linears(model)


@functools.cache
def kernel_fault() -> str | None:
    """Why packed products cannot be trusted in this torch (an operation missing or failing, a wrong product), or None.

    Run once per process (cached); a fault is logged as a warning that one time.
    """
    import torch

    fault = None
    missing = [op for op in OPS if not hasattr(torch.ops.mkldnn, op)]
    if missing:
        fault = f"torch {torch.__version__} has no torch.ops.mkldnn.{', '.join(missing)}"
    else:
        generator = torch.Generator().manual_seed(0)
        linear = torch.nn.Linear(64, 37)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(37, 64, generator=generator))
            linear.bias.copy_(torch.randn(37, generator=generator))
        inputs = torch.randn(2, 5, 64, generator=generator)
        try:
            with torch.inference_mode():
                PackedLinear: Any = packed_linear()
                product = PackedLinear.product(inputs, PackedLinear.pack(linear.weight), linear.bias)
                expected = torch.nn.functional.linear(inputs, linear.weight, linear.bias)
                if product.shape != expected.shape or not torch.allclose(product, expected, rtol=1e-4, atol=1e-4):
                    fault = f"a packed product differs from F.linear in torch {torch.__version__}"
        except Exception as exc:  # a changed schema raises here, not at the first request
            fault = f"a packed product failed in torch {torch.__version__}: {type(exc).__name__}: {exc}"
    if fault is not None:
        log.warning("packed linear layers are off: %s; running torch's own (slower) linear layers", fault)
    return fault


def pack_linears(model: Any, *, fuse: bool = True) -> int:
    """Replace every ``torch.nn.Linear`` in ``model`` by a packed one (in place); returns how many.

    With ``fuse``, each set of ``SIBLINGS`` (same input size, all with or all without a
    bias) becomes ``PackedPart`` modules of one ``PackedGroup``; a sibling that wraps its
    linear layer as ``base`` (a LoRA-adapted layer) has that ``base`` fused. The packed copy
    replaces the layer's own weight; a weight shared with another module (an output layer
    tied to the input embeddings) stays where it is also used.
    """
    import torch

    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    fused: set[int] = set()
    for parent in list(model.modules()) if fuse else []:
        for names in SIBLINGS:
            owners = [_holder(parent, name) for name in names]
            members = [member for owner, attr in owners if isinstance(member := getattr(owner, attr, None), torch.nn.Linear)]
            if len(members) == len(owners) and len({(member.in_features, member.bias is None) for member in members}) == 1:
                group = packed_group()(members)
                for index, ((owner, attr), member) in enumerate(zip(owners, members)):
                    setattr(owner, attr, packed_part()(group, index))
                    fused.add(id(member))
    for name, linear in linears:
        if id(linear) not in fused:
            model.set_submodule(name, packed_linear()(linear))
    return len(linears)


def _holder(parent: Any, name: str) -> tuple[Any, str]:
    """Where sibling ``name`` of ``parent`` keeps its linear layer: ``parent.name``, or ``parent.name.base`` for a wrapper."""
    wrapper = getattr(parent, name, None)
    return (wrapper, "base") if hasattr(wrapper, "base") else (parent, name)


@functools.cache
def packed_linear() -> type:
    """The ``PackedLinear`` module class (defined on first use: torch is imported only when a model is loaded)."""
    import torch

    class PackedLinear(torch.nn.Module):
        """``torch.nn.Linear``'s forward, with the weight held in oneDNN's packed layout."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.packed = self.pack(linear.weight)
            self.bias = linear.bias

        @staticmethod
        def pack(weight: torch.Tensor) -> torch.Tensor:
            """``weight`` [out_features, in_features] reordered once into oneDNN's layout."""
            return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_HINT)

        @staticmethod
        def product(inputs: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            """``inputs @ weight.T + bias`` with a weight from ``pack``."""
            return torch.ops.mkldnn._linear_pointwise(inputs, packed, bias, "none", [None], "")

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.product(inputs, self.packed, self.bias)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    return PackedLinear


@functools.cache
def packed_group() -> type:
    """The ``PackedGroup`` class: sibling linear layers' weights stacked and packed as one."""
    import torch

    PackedLinear: Any = packed_linear()

    class PackedGroup(torch.nn.Module):
        """One packed product for linear layers that take the same input; its ``PackedPart`` modules stand in for them."""

        def __init__(self, linears: list[torch.nn.Linear]):
            super().__init__()
            self.sizes = [linear.out_features for linear in linears]
            self.packed = PackedLinear.pack(torch.cat([linear.weight.detach() for linear in linears]))
            self.bias = None if linears[0].bias is None else torch.cat([linear.bias.detach() for linear in linears])

        def part(self, inputs: torch.Tensor, index: int) -> torch.Tensor:
            """Output ``index`` for ``inputs``: the product is computed once for the siblings' consecutive calls.

            Reuse is per thread and for the very same input tensor, and only until every
            part has been taken once: a second round of calls computes afresh.
            """
            last = getattr(_last_product, "value", None)
            if last is None or last[0] is not self or last[1] is not inputs or index not in last[3]:
                product = PackedLinear.product(inputs, self.packed, self.bias)
                last = (self, inputs, [out.contiguous() for out in product.split(self.sizes, dim=-1)], set(range(len(self.sizes))))
                _last_product.value = last
            last[3].discard(index)
            if not last[3]:
                _last_product.value = None
            return last[2][index]

    return PackedGroup


@functools.cache
def packed_part() -> type:
    """The ``PackedPart`` class: one linear layer's share of a ``PackedGroup``."""
    import torch

    class PackedPart(torch.nn.Module):
        def __init__(self, group: Any, index: int):  # a PackedGroup: its class is made at run time, mypy cannot name it
            super().__init__()
            self.group, self.index = group, index
            self.in_features, self.out_features = group.packed.shape[1], group.sizes[index]

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.group.part(inputs, self.index)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, part {self.index} of its group"

    return PackedPart


__all__ = ["OPS", "PACKED_ENV", "PACK_HINT", "SIBLINGS", "kernel_fault", "pack_if_sound", "pack_linears", "packable",
            "packed_group", "packed_linear", "packed_part"]
