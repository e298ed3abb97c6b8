"""The running batch of ``TransformersLocalBackend``: rows join and leave one decode between its steps.

A static batch runs until its longest answer ends while new requests queue, and its
short rows idle; here every decode step feeds one token per running row, and between
steps a newcomer's prompt keys and values (prefilled alone) are spliced in as a new row
and a finished row is taken out, its slot free at once.

Layout: per layer one key and one value buffer [rows, kv_heads, columns, head_dim]; the
running rows use the column window ``[start, end)``, each row right-aligned in it (its
last token in the last column, pads masked on its left), so a step writes every row's
new keys and values into column ``end``. Position ids are each row's own token count,
so a row's attention sees exactly what it would alone. A newcomer longer than the window
extends it to the left; rows leaving trim all-pad leading columns; when the buffers run
out of room (columns or rows) they are copied into larger ones, with room for the
longest remaining answer.

``RowSampler`` is a row's own decoding rule: greedy (``temperature`` None or 0), or
temperature and nucleus ``top_p`` with the row's own ``torch.Generator`` seeded with
``params.seed``, so a seeded row draws the same tokens whatever else is in the batch
(in float32, where the batch does not change a row's logits).

Models whose cache is more than plain per-token keys and values (sliding windows,
recurrent layers) cannot be spliced this way: ``SoloBatch`` decodes them one row at a
time in the model's own cache.
"""

from __future__ import annotations

import functools
from typing import Any

from esc_eval.agents.messages import SamplingParams

ROOM_SLACK = 32
"""Extra columns reserved on each copy into larger buffers, so that newcomers rarely force another copy."""


class RowSampler:
    """One row's next-token rule: greedy, or sampled with the row's own seeded generator."""

    def __init__(self, params: SamplingParams, device: str = "cpu"):
        import torch

        self.temperature = params.temperature or 0.0  # None or 0: greedy
        self.top_p = params.top_p
        self.generator: Any = None
        if self.temperature:
            self.generator = torch.Generator(device=device)
            if params.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(params.seed)

    @property
    def greedy(self) -> bool:
        return self.generator is None

    def pick(self, logits: Any) -> int:
        """The next token from one row's logits (1-D)."""
        return next_tokens(logits[None], [self])[0]


NUCLEUS_CANDIDATES = 256
"""Most probable tokens a nucleus (``top_p``) is looked for in before the whole vocabulary is sorted."""


def next_tokens(logits: Any, samplers: list[RowSampler]) -> list[int]:
    """Every row's next token from the step's logits [rows, vocab].

    Greedy rows take one argmax. Sampled rows share one softmax and one ``topk`` of their
    temperature-scaled logits; a row's nucleus is taken from its top candidates when they
    hold ``top_p`` of the mass (else from a sort of its whole vocabulary), and it draws by
    inverse CDF with its own generator. Sorting the 49k vocabulary of every row and
    ``torch.multinomial`` over all of it took 44 ms per step of 8 rows (a decode step is
    ~90 ms); this takes a few. Every operation is row-wise, so a row's draw does not depend
    on the other rows.
    """
    import torch

    tokens = logits.argmax(dim=-1).tolist()
    sampled = [row for row, sampler in enumerate(samplers) if not sampler.greedy]
    if not sampled:
        return tokens
    chosen = [samplers[row] for row in sampled]
    scaled = logits[sampled].float() / torch.tensor([[s.temperature] for s in chosen], device=logits.device)
    probs = torch.softmax(scaled, dim=-1)
    top, order = torch.topk(probs, min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    for i, (row, sampler) in enumerate(zip(sampled, chosen)):
        if sampler.top_p is None or sampler.top_p >= 1:
            weights, ids = probs[i], None
        else:
            candidates, ids = top[i], order[i]
            if float(candidates.sum()) < sampler.top_p:  # a flat distribution: its nucleus needs the whole vocabulary
                candidates, ids = torch.sort(probs[i], descending=True)
            keep = int(((torch.cumsum(candidates, dim=-1) - candidates) < sampler.top_p).sum())  # the top token always stays
            weights, ids = candidates[:keep], ids[:keep]
        cumulative = torch.cumsum(weights, dim=-1)
        drawn = torch.rand((), generator=sampler.generator, device=cumulative.device) * cumulative[-1]
        index = min(int(torch.searchsorted(cumulative, drawn, right=True)), len(cumulative) - 1)
        tokens[row] = index if ids is None else int(ids[index])
    return tokens


class RunningBatch:
    """Rows decoding together in one cache; ``members[i]`` is the caller's object for row ``i``.

    Only the backend's decode thread uses it.
    """

    def __init__(self, model: Any, max_rows: int):
        from transformers import DynamicCache

        self.model = model
        self.max_rows = max_rows
        self.members: list[Any] = []
        self.start = self.end = 0
        self._lengths: list[int] = []  # tokens in each row's cache
        self._room: list[int] = []  # columns each row may still add
        self._keys: list[Any] = []
        self._values: list[Any] = []
        self._mask: Any = None
        self._cache = DynamicCache(config=model.config)
        self._cache.layers = [window_layer()(self, index) for index in range(len(self._cache.layers))]

    def __len__(self) -> int:
        return len(self.members)

    def add(self, member: Any, layers: list[tuple[Any, Any]], room: int) -> None:
        """Splice in a prompt's keys and values (per layer, each [1, kv_heads, tokens, head_dim]) as a new last row.

        ``room``: the tokens the row may still feed (its remaining answer budget).
        """
        length = layers[0][0].shape[-2]
        rows = len(self.members)
        if not rows:
            self.start = self.end = 0
        if not self._keys or rows == self._keys[0].shape[0] or length > self.end or self.end + room > self._keys[0].shape[2]:
            self._grow(rows + 1, length, max([room, *self._room]), layers)
        end = self.end
        for buffer, values, (new_keys, new_values) in zip(self._keys, self._values, layers):
            buffer[rows, :, end - length:end] = new_keys[0]
            values[rows, :, end - length:end] = new_values[0]
        self._mask[rows] = 0
        self._mask[rows, end - length:end] = 1
        self.members.append(member)
        self._lengths.append(length)
        self._room.append(room)
        self.start = min(self.start, end - length)

    def remove(self, rows: list[int]) -> None:
        """Take rows out; the last rows move into the freed slots, and all-pad leading columns are trimmed."""
        start, end = self.start, self.end
        for row in sorted(rows, reverse=True):  # the last row is then never one still to be removed
            last = len(self.members) - 1
            if row != last:
                for buffer in (*self._keys, *self._values):
                    buffer[row, :, start:end] = buffer[last, :, start:end]
                self._mask[row] = self._mask[last]
                self.members[row], self._lengths[row], self._room[row] = self.members[last], self._lengths[last], self._room[last]
            del self.members[last], self._lengths[last], self._room[last]
        if self.members:
            self.start = self.end - max(self._lengths)
        else:  # nothing running: free the buffers
            self._keys, self._values, self._mask = [], [], None

    def step(self, tokens: list[int]) -> Any:
        """Feed each row its next token; returns the logits [rows, vocab] of the token after it."""
        import torch

        rows = len(self.members)
        if self.end >= self._keys[0].shape[2]:
            self._grow(rows, 0, max(self._room), list(zip(self._keys, self._values)))
        self._mask[:rows, self.end] = 1
        device = self._keys[0].device
        output = self.model(
            input_ids=torch.tensor(tokens, device=device).unsqueeze(1),
            attention_mask=self._mask[:rows, self.start:self.end + 1],
            position_ids=torch.tensor(self._lengths, device=device).unsqueeze(1),
            past_key_values=self._cache, use_cache=True, logits_to_keep=1,
        )
        self.end += 1
        self._lengths = [length + 1 for length in self._lengths]
        self._room = [room - 1 for room in self._room]
        return output.logits[:, -1]

    def _grow(self, rows: int, left: int, room: int, like: list[tuple[Any, Any]]) -> None:
        """Copy the window into zeroed buffers with ``rows`` rows or more, ``left`` columns before ``end`` and ``room`` after.

        ``like``: per layer (keys, values) of the dtype, heads and head size to use.
        """
        import torch

        capacity = min(self.max_rows, max(rows, 2 * len(self.members)))
        running, width = len(self.members), self.end - self.start
        end = max(left, width)
        columns = end + room + ROOM_SLACK

        def moved(old: Any, reference: Any) -> Any:
            new = reference.new_zeros((capacity, reference.shape[1], columns, reference.shape[3]))
            if running:
                new[:running, :, end - width:end] = old[:running, :, self.start:self.end]
            return new

        self._keys = [moved(old, keys) for old, (keys, _) in zip(self._keys or [None] * len(like), like)]
        self._values = [moved(old, values) for old, (_, values) in zip(self._values or [None] * len(like), like)]
        mask = torch.zeros((capacity, columns), dtype=torch.long, device=like[0][0].device)
        if running:
            mask[:running, end - width:end] = self._mask[:running, self.start:self.end]
        self._mask = mask
        self.start, self.end = end - width, end


@functools.cache
def window_layer() -> type:
    """The cache layer a ``RunningBatch`` hands the model: its window so far, and the step's column to write.

    Defined on first use, as transformers is imported only when a model is loaded.
    """
    from transformers.cache_utils import DynamicLayer

    class WindowLayer(DynamicLayer):
        def __init__(self, batch: RunningBatch, index: int):
            super().__init__()
            self.batch, self.index = batch, index
            self.is_initialized = True

        def get_seq_length(self) -> int:
            return self.batch.end - self.batch.start

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            batch = self.batch
            rows, end = key_states.shape[0], batch.end
            keys, values = batch._keys[self.index], batch._values[self.index]
            keys[:rows, :, end:end + 1] = key_states
            values[:rows, :, end:end + 1] = value_states
            return keys[:rows, :, batch.start:end + 1], values[:rows, :, batch.start:end + 1]

    return WindowLayer


class SoloBatch:
    """One row at a time in the model's own cache: for models whose cache ``RunningBatch`` cannot splice."""

    max_rows = 1

    def __init__(self, model: Any):
        self.model = model
        self.members: list[Any] = []
        self._cache: Any = None

    def __len__(self) -> int:
        return len(self.members)

    def add(self, member: Any, cache: Any) -> None:
        """The row's prefilled cache (the model's own ``Cache``) becomes the batch's."""
        self.members, self._cache = [member], cache

    def remove(self, rows: list[int]) -> None:
        if rows:
            self.members, self._cache = [], None

    def step(self, tokens: list[int]) -> Any:
        import torch

        output = self.model(input_ids=torch.tensor([tokens], device=self.model.device), past_key_values=self._cache, use_cache=True,
                            logits_to_keep=1)
        return output.logits[:, -1]


__all__ = ["NUCLEUS_CANDIDATES", "ROOM_SLACK", "RowSampler", "RunningBatch", "SoloBatch", "next_tokens", "window_layer"]
