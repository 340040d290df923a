"""The runner's KV cache: the library's ``DynamicCache`` made croppable for every layer type.

Speculative decoding writes entries for drafts and removes them on a rejection; each layer may
hold a different length (early layers run ahead). Three kinds of layer state need different
handling:

- full attention (``DynamicLayer``): a crop drops the last entries (the library's own crop);
- sliding-window attention: the library keeps only ``window - 1`` entries, after which a crop
  cannot restore the dropped ones. Past recording is switched on and each layer keeps
  ``window - 1 + rollback`` entries, so a crop of up to ``rollback`` tokens is exact;
- linear attention / state-space layers (Qwen3-Next, Qwen3.5, Mamba, ...): a recurrent state
  summarises the whole prefix and cannot be cropped. The state is snapshotted after every
  position a layer reaches (the last ``rollback`` positions are kept); a crop restores the
  snapshot, and a crop into the middle of a multi-token step (an EESD verification) restores
  the state before that step and re-runs the layer on the kept tokens' stored inputs.

Lengths are tracked here per layer (a linear layer has no sequence length of its own).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import (
    CacheLayerMixin,
    DynamicLayer,
    DynamicSlidingWindowLayer,
    LinearAttentionCacheLayerMixin,
)

from ppsd_sim.errors import ConfigError

#: default positions a crop may remove (EESD: up to γ + 1; PPSD: tokens in flight, k + 1 by
#: default); deeper is refused. Linear-attention layers keep one state snapshot per position
#: of it (Qwen3-Next-80B: ~1.1 MB per layer in bf16, so 32 positions × 36 layers ≈ 1.3 GB)
ROLLBACK = 32

FULL, SLIDING, LINEAR, HYBRID, OTHER = "full", "sliding", "linear", "hybrid", "other"

_LINEAR_ATTRS = (
    "conv_states",
    "recurrent_states",
    "is_conv_states_initialized",
    "is_recurrent_states_initialized",
    "has_previous_state",
    "conv_kernel_size",
)


def layer_kind(layer: Any) -> str:
    """full | sliding | linear | hybrid | other, from the library's cache layer class."""
    linear = isinstance(layer, LinearAttentionCacheLayerMixin)
    kv = isinstance(layer, CacheLayerMixin)
    if linear and kv:
        return HYBRID
    if linear:
        return LINEAR
    if isinstance(layer, DynamicSlidingWindowLayer):
        return SLIDING
    if type(layer) is DynamicLayer:
        return FULL
    return OTHER


def _snapshot(layer: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for attr in _LINEAR_ATTRS:
        value = getattr(layer, attr)
        snap[attr] = {
            k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in value.items()
        }
    snap["device"], snap["dtype"] = layer.device, layer.dtype
    return snap


def _restore(layer: Any, snap: dict[str, Any]) -> None:
    for attr in _LINEAR_ATTRS:
        setattr(
            layer,
            attr,
            {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in snap[attr].items()},
        )
    layer.device, layer.dtype = snap["device"], snap["dtype"]


def _crop_sliding(layer: Any, extra: int) -> None:
    """Remove the last ``extra`` entries of a sliding-window layer that records its past. The
    library's own crop also shrinks the layer back to ``window - 1`` entries, which would make
    the next crop impossible; this one keeps what is stored (``after`` bounds it)."""
    stored = 0 if layer.keys is None else int(layer.keys.shape[-2])
    length = int(layer.cumulative_length) - extra
    need = min(int(layer.sliding_window) - 1, length)
    if stored - extra < need:
        raise CropError(
            f"sliding-window layer keeps {stored} entries; a crop of {extra} needs "
            f"{need + extra} (LayerDriver rollback)"
        )
    layer.keys = layer.keys[..., : stored - extra, :]
    layer.values = layer.values[..., : stored - extra, :]
    layer.cumulative_length = length


def _kv_crop(layer: Any, remove: int) -> None:
    """Crop the attention part of a layer by ``remove`` entries (sliding or full). A hybrid
    layer's combined crop is not used: it refuses without past recording of its linear part,
    whose state is restored from snapshots instead."""
    if remove <= 0:
        return
    if isinstance(layer, DynamicSlidingWindowLayer):
        _crop_sliding(layer, remove)
    else:
        DynamicLayer.crop(layer, -remove)


@dataclass
class _Chunk:
    """A multi-token step of a linear layer: where it started and the inputs it received."""

    start: int
    inputs: torch.Tensor  # (1, n, d) hidden states that entered the layer


class CropError(ConfigError):
    """A crop deeper than the cache keeps (``rollback``): a scheme that drafts or keeps in
    flight more tokens than the driver was built for. One line, like any bad setting."""

    def __init__(self, message: str) -> None:
        super().__init__("scheme", message + "; build the LayerDriver with a larger rollback")


#: re-runs one layer on stored inputs: (layer index, inputs, first position)
Rerun = Callable[[int, torch.Tensor, int], None]


class DriverCache(DynamicCache):
    """``DynamicCache`` + per-layer lengths, sliding-window rollback and snapshots of recurrent
    states (see the module docstring)."""

    def __init__(self, config: Any, rollback: int = ROLLBACK) -> None:
        try:
            super().__init__(config=config)
        except TypeError:
            super().__init__()
        self.rollback = rollback
        n = int(getattr(config, "num_hidden_layers", 0) or len(self.layers))
        self.lengths = [0] * n
        self.kinds = [layer_kind(x) for x in self.layers] if self.layers else [FULL] * n
        self._snaps: dict[int, deque[tuple[int, dict[str, Any]]]] = {}
        self._chunks: dict[int, _Chunk] = {}
        for i, kind in enumerate(self.kinds):
            if kind == SLIDING:
                self.layers[i].activate_past_recording()
            elif kind in (LINEAR, HYBRID):
                self._snaps[i] = deque()

    def length(self, i: int) -> int:
        """Tokens layer ``i`` holds (0 if it never ran): an attention layer's own count (it is
        right even after work abandoned mid-layer), a recurrent layer's tracked position."""
        if i < len(self.kinds) and self.kinds[i] == LINEAR:
            return self.lengths[i]
        if i >= len(self.layers):
            return 0
        return int(self.layers[i].get_seq_length())

    def abandon(self, i: int, pos0: int) -> None:
        """Layer ``i`` was left mid-call (a rejection arrived): a recurrent state goes back to
        ``pos0`` now (an attention layer's extra entries are cropped like any others)."""
        if self.kinds[i] in (LINEAR, HYBRID):
            snaps = self._snaps[i]
            while snaps and snaps[-1][0] > pos0:
                snaps.pop()
            if self.kinds[i] == HYBRID and self.layers[i].get_seq_length() > pos0:
                _kv_crop(self.layers[i], self.layers[i].get_seq_length() - pos0)
            _restore(self.layers[i], snaps[-1][1])
            self.lengths[i] = pos0
            self._chunks.pop(i, None)

    # -- around one layer call -----------------------------------------------------------------
    def before(self, i: int, pos0: int, hidden: torch.Tensor) -> None:
        """Right before layer ``i`` runs ``hidden`` at positions ``pos0..``."""
        if self.kinds[i] in (LINEAR, HYBRID):
            snaps = self._snaps[i]
            if not snaps or snaps[-1][0] != pos0:
                snaps.append((pos0, _snapshot(self.layers[i])))
            if hidden.shape[1] > 1:
                self._chunks[i] = _Chunk(pos0, hidden)
            else:
                self._chunks.pop(i, None)

    def after(self, i: int, pos0: int, n: int) -> None:
        """After layer ``i`` ran ``n`` tokens from ``pos0``."""
        end = pos0 + n
        self.lengths[i] = end
        kind = self.kinds[i]
        if kind in (LINEAR, HYBRID):
            snaps = self._snaps[i]
            snaps.append((end, _snapshot(self.layers[i])))
            while len(snaps) > 1 and snaps[0][0] < end - self.rollback:
                snaps.popleft()
        elif kind == SLIDING:
            layer = self.layers[i]
            keep = layer.sliding_window - 1 + self.rollback
            if layer.keys is not None and layer.keys.shape[-2] > keep:
                layer.keys = layer.keys[..., -keep:, :]
                layer.values = layer.values[..., -keep:, :]

    # -- crop -----------------------------------------------------------------------------------
    def crop_layer(self, i: int, length: int, rerun: Rerun) -> int:
        """Cut layer ``i`` back to ``length`` tokens; returns the tokens removed. ``rerun`` is
        used only for a crop into the middle of a linear layer's multi-token step."""
        extra = self.length(i) - length
        if extra <= 0:
            return 0
        if extra > self.rollback:
            raise CropError(
                f"layer {i}: a crop of {extra} tokens exceeds the {self.rollback} the cache "
                "keeps (LayerDriver rollback)"
            )
        kind = self.kinds[i]
        if kind in (LINEAR, HYBRID):
            self._crop_linear(i, length, rerun)
        else:
            _kv_crop(self.layers[i], extra)
            self.lengths[i] = length
        return extra

    def _crop_linear(self, i: int, length: int, rerun: Rerun) -> None:
        layer, snaps = self.layers[i], self._snaps[i]
        while snaps and snaps[-1][0] > length:
            snaps.pop()
        if snaps and snaps[-1][0] == length:
            if self.kinds[i] == HYBRID:
                _kv_crop(layer, self.length(i) - length)
            _restore(layer, snaps[-1][1])
            self.lengths[i] = length
            return
        chunk = self._chunks.pop(i, None)
        if chunk is None or not snaps or snaps[-1][0] != chunk.start or length < chunk.start:
            raise CropError(f"linear-attention layer {i}: no saved state for position {length}")
        if self.kinds[i] == HYBRID:
            _kv_crop(layer, self.length(i) - chunk.start)
        _restore(layer, snaps[-1][1])
        self.lengths[i] = chunk.start
        rerun(i, chunk.inputs[:, : length - chunk.start], chunk.start)
