"""The prefix cache of ``TransformersLocalBackend``: past prompts' keys and values, reused by later prompts.

Prompts are long (a system prompt or seeker card of ~100-220 tokens) and
every turn re-sends the whole history, so most of a prompt was already computed at the
agent's previous turn, and the supporter's system prompt is the same in every episode.
The backend keeps every prompt's keys and values once it is prefilled (``prefix_cache_mb``,
least recently used dropped first; an entry that a newer prompt extends is dropped at
once; keys and values computed with a LoRA adapter serve only rows of that adapter:
``space``). A new prompt starts from the cached entry sharing the longest token prefix with it
and prefills only the rest, alone, before it joins the running batch; so the first
episode's system prompt is computed once, and the others reuse it. Counters:
``prefilled_tokens`` and ``reused_tokens``. Prefilling costs ~4-8 ms a token on 2 cores,
a decode step ~80-190 ms a batch, so the cache cut the ``local`` benchmark's prefill by
more than half. The embedded model's keys and values take 45 KiB a token in float32, so
the default 512 MB holds ~11,000 prompt tokens. A prompt's cache reserves its room up front
(``preallocated_layer``): a growing ``DynamicCache`` concatenated every layer at every
step. Models whose cache is more than plain per-token keys and values (sliding windows,
recurrent layers) run without either.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

Space = Any
"""What else a prompt's keys and values depend on besides its tokens (the row's LoRA adapter); entries of one space serve only it."""


@dataclass(frozen=True, eq=False)
class Prefix:
    """A past prompt's tokens and their keys and values: per layer ``(keys, values)``, each [1, kv_heads, tokens, head_dim]."""

    tokens: tuple[int, ...]
    layers: list[tuple[Any, Any]]
    nbytes: int
    space: Space = None


class PrefixCache:
    """Past prompts' keys and values, at most ``max_bytes`` of them, the least recently used dropped first.

    Only the backend's prefill thread touches it (and ``aclose`` once that thread is gone).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[tuple[Space, tuple[int, ...]], Prefix] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tokens: tuple[int, ...], limit: int, space: Space = None) -> tuple[Prefix | None, int]:
        """The entry of ``space`` sharing the longest prefix with ``tokens`` (counting at most ``limit``), and that length."""
        best, best_count = None, 0
        for entry in self._entries.values():
            count = common_prefix(entry.tokens, tokens, limit) if entry.space == space else 0
            if count > best_count:
                best, best_count = entry, count
        if best is not None:
            self._entries.move_to_end((space, best.tokens))
        return best, best_count

    def add(self, tokens: tuple[int, ...], layers: list[tuple[Any, Any]], space: Space = None) -> None:
        """Keep ``layers`` for ``tokens`` in ``space``; its entries that are prefixes of ``tokens`` go, the new one covers them."""
        key = (space, tokens)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        nbytes = sum(keys.nbytes + values.nbytes for keys, values in layers)
        if nbytes > self.max_bytes:
            return
        for covered in [(old_space, old) for old_space, old in self._entries
                        if old_space == space and len(old) < len(tokens) and tokens[:len(old)] == old]:
            self._drop(covered)
        self._entries[key] = Prefix(tokens, layers, nbytes, space)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def _drop(self, key: tuple[Space, tuple[int, ...]]) -> None:
        self.nbytes -= self._entries.pop(key).nbytes


def common_prefix(a: tuple[int, ...], b: tuple[int, ...], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``: a binary search over C-speed slice compares."""
    high = min(len(a), len(b), limit)
    if a[:high] == b[:high]:
        return high
    low = 0  # invariant: a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


@functools.cache
def preallocated_layer() -> type:
    """A ``DynamicLayer`` that writes keys and values into room reserved up front instead of concatenating.

    Defined on first use, as transformers is imported only when a model is loaded. ``keys``
    and ``values`` are views of the filled part; the layer grows (doubling) if it runs out.
    """
    import torch
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.length = 0

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            end = self.length + key_states.shape[-2]
            if not self.is_initialized:
                self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
                self._keys, self._values = (
                    states.new_empty((*states.shape[:2], max(end, self.capacity), states.shape[3]))
                    for states in (key_states, value_states)
                )
            elif end > self._keys.shape[-2]:
                room = max(end, 2 * self._keys.shape[-2])
                self._keys, self._values = (
                    torch.cat([old[:, :, :self.length], old.new_empty((*old.shape[:2], room - self.length, old.shape[3]))], dim=-2)
                    for old in (self._keys, self._values)
                )
            self._keys[:, :, self.length:end] = key_states
            self._values[:, :, self.length:end] = value_states
            self.length = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

    return PreallocatedLayer

__all__ = ["Prefix", "PrefixCache", "Space", "common_prefix", "preallocated_layer"]
