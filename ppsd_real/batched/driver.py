"""Run a batch of sequences through the library's own layers, each row at its own positions.

The batch-1 ``LayerDriver`` learnt how the model calls its layers (``parts.templates``: which
argument is the hidden state, the cache, the mask, the positions, the rotary encodings); this
driver makes the same calls with a batch dimension: per-row positions (B, n) for the rotary
modules and absolute tables, a ``RaggedCache`` (``batched.cache``) and an additive mask per
layer type that lets row b's query at position p see that row's slots <= p (and, for a sliding
layer, > p - window). The mask is always given, also for one new token, because rows differ
in length; it is the only thing besides the cache that batching changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ppsd_real.arch import observe as obs
from ppsd_real.arch.cache import FULL, SLIDING, DriverCache
from ppsd_real.batched.cache import RaggedCache
from ppsd_real.layers import LayerDriver, call_arguments, split_calls
from ppsd_sim.errors import ConfigError


class BatchedDriver:
    """Embeddings → layers[a:b] → heads for B sequences at once on a ``RaggedCache``.

    Mirrors ``LayerDriver``'s calls (``embed``, ``run_layers``, ``head``, ``sync``) so the
    profiler's timing loops run on either; ``pos0`` is one position for every row or one per
    row. Refuses models whose layers keep recurrent state (they cannot be cropped per row
    here) or take no attention mask (padding could not be hidden from them).
    """

    def __init__(self, driver: LayerDriver) -> None:
        self.base = driver
        self.parts = driver.parts
        self.n_layers = driver.n_layers
        self.device, self.dtype = driver.device, driver.dtype
        self._min = torch.finfo(self.dtype).min
        probe = DriverCache(self.parts.config)
        arch = self.parts.model_type or "model"
        self.windows: list[int | None] = []
        for i in range(self.n_layers):
            kind = probe.kinds[i] if i < len(probe.kinds) else FULL
            if kind not in (FULL, SLIDING):
                raise ConfigError(
                    "model",
                    f"{arch}: layer {i} is a {kind} layer; batched runs support attention "
                    "layers only (full or sliding window)",
                )
            window = int(probe.layers[i].sliding_window) if kind == SLIDING else None
            self.windows.append(window)
        for i, tpl in enumerate(self.parts.templates):
            kinds = {kind for kind, _ in tpl.values()}
            if obs.MASK not in kinds or obs.CACHE not in kinds:
                raise ConfigError(
                    "model",
                    f"{arch}: layer {i} takes no attention mask or cache argument; batched "
                    "runs need both (rows of different lengths)",
                )
            for name, (kind, detail) in tpl.items():
                if kind == obs.POS and (not detail or detail[-1] != 1):
                    raise ConfigError(
                        "model",
                        f"{arch}: layer {i} takes positions {name!r} without a batch axis; "
                        "batched runs need per-row positions",
                    )
        self._calls = split_calls(self.parts.templates)

    # ---- cache ------------------------------------------------------------------------------
    def new_cache(self, rows: int, gaps: bool = False) -> RaggedCache:
        """An empty cache for ``rows`` sequences (``gaps``: see ``RaggedCache``)."""
        return RaggedCache(self.n_layers, rows, gaps)

    def sync(self) -> None:
        """Wait for this driver's device (see ppsd_real.device); free on the CPU."""
        self.base.sync()

    # ---- compute ------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Token embeddings (B, n, d) of B rows of n ids (absolute positions: ``run_layers``)."""
        ids = torch.tensor([list(r) for r in token_ids], dtype=torch.long, device=self.device)
        return self.parts.embed(ids)

    @torch.inference_mode()
    def run_layers(
        self,
        hidden: torch.Tensor,
        start: int,
        stop: int,
        cache: RaggedCache,
        pos0: int | Sequence[int],
        valid: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Run layers[start:stop] on ``hidden`` (B, n, d), row b at positions
        ``pos0[b] ..``, and cache their KV in row b's own slots. ``valid[b]`` (a padded
        prefill): only row b's first ``valid[b]`` tokens are real; its cache keeps those."""
        rows, n = int(hidden.shape[0]), int(hidden.shape[1])
        starts = [int(pos0)] * rows if isinstance(pos0, int) else [int(p) for p in pos0]
        if len(starts) != rows or cache.rows != rows:
            raise RuntimeError(
                f"batched step: {rows} rows of hidden states, {len(starts)} positions, "
                f"{cache.rows} cache rows"
            )
        first = torch.tensor(starts, dtype=torch.long, device=self.device)
        pos = first[:, None] + torch.arange(n, device=self.device)[None, :]
        span = max(starts) + n
        if start == 0:
            absolute = self.parts.rotary.absolute(pos)
            if absolute is not None:
                hidden = hidden + absolute.to(hidden.dtype)
        step = _Step(self, hidden, pos, span)
        ends = None if valid is None else [s + int(v) for s, v in zip(starts, valid, strict=True)]
        for i in range(start, stop):
            kwargs = call_arguments(self._calls[i], i, hidden, cache, step, starts)
            cache.layers[i].plan(starts, pos, span)
            out = self.parts.layers[i](**kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
            if ends is not None:
                cache.layers[i].lengths = list(ends)
        return hidden

    @torch.inference_mode()
    def head(self, hidden: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
        """Greedy tokens (B, n) from final norm + LM head (or a separate early-exit head)."""
        return (head or self.parts.lm_head)(self.parts.norm(hidden)).argmax(-1)


class _Step:
    """What one batched ``run_layers`` call computes once and shares between its layers (the
    batched twin of ``layers._Step``, for ``layers.call_arguments``): the mask per layer type,
    positions with a batch axis, the rotary encodings of every row's positions."""

    def __init__(
        self,
        d: BatchedDriver,
        hidden: torch.Tensor,
        pos: torch.Tensor,
        span: int,
    ) -> None:
        self.d, self.hidden, self.pos, self.span = d, hidden, pos, span
        self.masks: dict[int | None, torch.Tensor] = {}
        self.ropes: dict[int, Any] = {}

    def mask(self, cache: RaggedCache, i: int, n: int, pos0: object) -> torch.Tensor:
        """Row b's query at position p sees that row's slots <= p (and > p - window)."""
        window = self.d.windows[i]
        if window not in self.masks:
            d = self.d
            q = self.pos[:, :, None]  # (B, n, 1)
            k = torch.arange(self.span, device=d.device)[None, None, :]
            banned = k > q
            if window is not None:
                banned |= q - k >= window
            mask = torch.zeros(banned.shape, dtype=d.dtype, device=d.device)
            self.masks[window] = mask.masked_fill_(banned, d._min)[:, None]
        return self.masks[window]

    def positions(self, lead: tuple[int, ...]) -> torch.Tensor:
        """The (B, n) positions under the leading axes a layer was seen to take."""
        return self.pos.expand(*lead[:-1], *self.pos.shape)

    def _fill(self, x: Any) -> Any:
        if isinstance(x, obs.Slot):
            return self.hidden if x.kind == obs.HIDDEN else self.positions(x.lead)
        return x

    def rope(self, j: int) -> Any:
        if j not in self.ropes:
            call = self.d.parts.rotary.ropes[j]
            args = [self._fill(a) for a in call.args]
            kwargs = {k: self._fill(v) for k, v in call.kwargs.items()}
            self.ropes[j] = call.module(*args, **kwargs)
        return self.ropes[j]
