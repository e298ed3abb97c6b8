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
"""

from __future__ import annotations

import functools
from typing import Any

PACK_HINT = 16


def packable(model: Any) -> bool:
    """Whether ``model``'s linear layers can run packed here: float32 on the CPU, with oneDNN built into torch."""
    import torch

    return (model.device.type == "cpu" and model.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def pack_linears(model: Any) -> int:
    """Replace every ``torch.nn.Linear`` in ``model`` by a ``PackedLinear`` (in place); returns how many.

    The packed copy replaces the layer's own weight; a weight shared with another module
    (an output layer tied to the input embeddings) stays where it is also used.
    """
    import torch

    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    for name, linear in linears:
        model.set_submodule(name, packed_linear()(linear))
    return len(linears)


@functools.cache
def packed_linear() -> type:
    """The ``PackedLinear`` module class (defined on first use: torch is imported only when a model is loaded)."""
    import torch

    class PackedLinear(torch.nn.Module):
        """``torch.nn.Linear``'s forward, with the weight held in oneDNN's packed layout."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACK_HINT)
            self.bias = linear.bias

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(inputs, self.packed, self.bias, "none", [None], "")

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    return PackedLinear

__all__ = ["PACK_HINT", "pack_linears", "packable", "packed_linear"]
