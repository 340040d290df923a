"""A KV cache for a batch of sequences of different lengths: each row has its own positions
and is cropped on its own.

Why not the library's ``DynamicCache``: its layers append the same number of entries to every
row (``torch.cat`` along the sequence axis) and crop every row by the same amount. Left padding
plus an attention mask serves batched AR, where every row grows by one per step, but not
speculative decoding: after a batched verification each row keeps a different number of its
γ + 1 new entries, so the rejected ones would stay behind as holes to mask, piling up round
after round, and a sequence joining the batch (continuous batching) would need every row
re-padded. Here a row's entry for absolute position p lives in slot p of that row:

- a step writes row b's n new entries at slots ``starts[b] .. starts[b] + n - 1`` (one scatter
  for all rows, into a buffer that grows geometrically);
- a crop of row b is a length: the slots past it are stale and the next step of that row
  overwrites them before anything reads them (a query at position p attends slots <= p only,
  the mask ``BatchedDriver`` builds), so a rejection removes that row's drafts and no other's;
- a sequence that finishes leaves (``keep_rows``), one that joins is appended with its own
  prefilled rows (``append``): one copy of the cache per change of the batch, none per step.

Attention reads ``max(starts) + n`` slots of every row: a short row pays for the longest one
(what padded batching costs without a paged-attention kernel). Attention layers only (full and
sliding window: a window is a mask, the slots are all kept); recurrent layers are refused by
``BatchedDriver``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

#: slots added to a row's buffer beyond what a step needs (then it doubles)
GROW = 64


class RaggedLayer(CacheLayerMixin):
    """One layer's keys and values, (rows, kv heads, slots, head dim), slot = position."""

    is_sliding = False
    is_croppable = True

    def __init__(self, rows: int, gaps: bool = False) -> None:
        super().__init__()
        self.rows = rows
        self.gaps = gaps  # see ``RaggedCache``
        self.lengths = [0] * rows  # valid prefix of each row
        self._starts: list[int] | None = None
        self._index: torch.Tensor | None = None
        self._span = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        b, h, _, dk = key_states.shape
        dv = value_states.shape[-1]
        self.keys = key_states.new_zeros((b, h, 0, dk))
        self.values = value_states.new_zeros((b, h, 0, dv))
        self.is_initialized = True

    def plan(self, starts: list[int], index: torch.Tensor, span: int) -> None:
        """The next ``update``: row b's new entries go to slots ``index[b]`` (= its positions);
        attention then reads slots [0, span)."""
        for b, s in enumerate(starts):
            if s > self.lengths[b] and not self.gaps:
                raise RuntimeError(
                    f"ragged cache: row {b} holds {self.lengths[b]} entries, a step at "
                    f"position {s} would leave a gap"
                )
        self._starts, self._index, self._span = starts, index, span

    def _reserve(self, slots: int) -> None:
        have = int(self.keys.shape[-2])
        if slots <= have:
            return
        new = max(slots + GROW, 2 * have)
        pad = (0, 0, 0, new - have)
        self.keys = torch.nn.functional.pad(self.keys, pad)
        self.values = torch.nn.functional.pad(self.values, pad)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._index is None or self._starts is None:
            raise RuntimeError("ragged cache: update without a planned step (BatchedDriver)")
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows, heads, n, _ = key_states.shape
        if rows != self.rows:
            raise RuntimeError(f"ragged cache holds {self.rows} rows, a step brought {rows}")
        self._reserve(self._span)
        idx = self._index[:, None, :, None]
        self.keys.scatter_(2, idx.expand(rows, heads, n, self.keys.shape[-1]), key_states)
        self.values.scatter_(2, idx.expand(rows, heads, n, self.values.shape[-1]), value_states)
        self.lengths = [s + n for s in self._starts]
        self._starts = self._index = None
        return self.keys[:, :, : self._span], self.values[:, :, : self._span]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return max(self.lengths, default=0) + query_length, 0

    def get_seq_length(self) -> int:
        return max(self.lengths, default=0)

    def get_max_length(self) -> int:
        return -1

    def crop(self, tokens_to_remove: int) -> None:
        """The library's crop (every row by the same amount); the runner uses ``crop_row``."""
        self.lengths = [max(0, n - tokens_to_remove) for n in self.lengths]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        keep = [int(i) for i in indices]
        if self.is_initialized:
            idx = torch.as_tensor(keep, dtype=torch.long, device=self.keys.device)
            self.keys = self.keys.index_select(0, idx)
            self.values = self.values.index_select(0, idx)
        self.lengths = [self.lengths[i] for i in keep]
        self.rows = len(keep)


class RaggedCache(Cache):
    """One ``RaggedLayer`` per decoder layer; rows are the batch's sequences in order.

    ``gaps``: a step may write a row past its valid prefix (else refused, a bug). Batched PPSD's
    later stages skip steps a rejection made useless, so a flushed row's next stale token can
    land past a gap; its output is never used, and that row's verified tokens rewrite the slots
    in position order before any of them reads one."""

    def __init__(self, n_layers: int, rows: int, gaps: bool = False) -> None:
        super().__init__(layers=[RaggedLayer(rows, gaps) for _ in range(n_layers)])
        self.rows = rows

    def lengths(self, layer: int) -> list[int]:
        """Entries each row holds in ``layer``."""
        return list(self.layers[layer].lengths)

    def crop_row(self, row: int, start: int, stop: int, length: int) -> int:
        """Cut ``row`` of layers[start:stop] back to at most ``length`` entries (no data moves:
        see the module docstring); returns the entries removed."""
        removed = 0
        for i in range(start, stop):
            layer = self.layers[i]
            extra = layer.lengths[row] - length
            if extra > 0:
                layer.lengths[row] = length
                removed += extra
        return removed

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only these rows, in this order (finished sequences leave the batch)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        for layer in self.layers:
            layer.batch_select_indices(idx)
        self.rows = len(rows)

    def append(self, other: RaggedCache) -> None:
        """Add ``other``'s rows after this cache's (sequences joining the batch). The other
        cache is consumed (its tensors are copied into this one's buffers)."""
        if len(other.layers) != len(self.layers):
            raise RuntimeError("ragged cache: appending a cache of another model")
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            if not theirs.is_initialized:
                if mine.is_initialized:
                    raise RuntimeError("ragged cache: appending rows that were never prefilled")
                # a layer neither cache holds (another pipeline stage's): rows only
                mine.lengths = mine.lengths + theirs.lengths
                mine.rows += theirs.rows
                continue
            if not mine.is_initialized:
                mine.keys, mine.values = theirs.keys, theirs.values
                mine.device, mine.dtype = theirs.device, theirs.dtype
                mine.is_initialized = True
            else:
                slots = max(int(mine.keys.shape[-2]), int(theirs.keys.shape[-2]))
                mine.keys = torch.cat([_pad_to(mine.keys, slots), _pad_to(theirs.keys, slots)])
                mine.values = torch.cat(
                    [_pad_to(mine.values, slots), _pad_to(theirs.values, slots)]
                )
            mine.lengths = mine.lengths + theirs.lengths
            mine.rows += theirs.rows
        self.rows += other.rows
        other.layers = []
        other.rows = 0


def _pad_to(x: torch.Tensor, slots: int) -> torch.Tensor:
    """``x`` zero-padded along the slot axis to ``slots`` (at least its own)."""
    have = int(x.shape[-2])
    return x if have >= slots else torch.nn.functional.pad(x, (0, 0, 0, slots - have))
