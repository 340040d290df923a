"""Drive a decoder-only model layer by layer with the library's own KV cache.

Transformers versions differ in how a decoder layer is called (cache keyword ``cache`` in 5.2x,
``past_key_values``/``past_key_value`` before), in whether rotary embeddings are computed by the
model (they are: we pass ``position_embeddings``), and in ``crop`` (a negative count of tokens
to remove now; older versions also accepted it, but read a positive value as a target length).
``LayerDriver`` looks these up at run time; attention itself is always the library's.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

_CACHE_KEYWORDS = ("cache", "past_key_values", "past_key_value")


#: Submodules of a decoder layer before which a stage checks for a rejection.
POLL_POINTS = ("self_attn.o_proj", "mlp", "mlp.down_proj")


def _has(module: torch.nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


class _Abandon(Exception):
    """Raised by the mid-layer poll hook to leave a layer whose work became useless."""


def _layer_cache_keyword(layer: torch.nn.Module) -> str:
    """The keyword this transformers version's decoder layer takes its KV cache under."""
    params = inspect.signature(layer.forward).parameters
    for name in _CACHE_KEYWORDS:
        if name in params:
            return name
    raise TypeError(f"{type(layer).__name__}.forward takes none of {_CACHE_KEYWORDS}")


@dataclass
class ModelParts:
    """The pieces of a Llama-family causal LM that the runner calls itself."""

    embed: torch.nn.Module
    layers: list[torch.nn.Module]
    norm: torch.nn.Module
    lm_head: torch.nn.Module
    rotary: torch.nn.Module
    config: object

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelParts:
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        return cls(
            base.embed_tokens,
            list(base.layers),
            base.norm,
            model.lm_head,
            base.rotary_emb,
            model.config,
        )


class LayerDriver:
    """Runs embeddings → layers[a:b] → heads for one sequence (batch 1) on a DynamicCache.

    Every layer's cache may hold a different length (early layers run ahead while drafting);
    the caller passes the absolute position of the first new token, and a layer whose cache is
    longer than that is cropped first (those entries belonged to a flushed branch).
    """

    def __init__(self, parts: ModelParts, held: range | None = None) -> None:
        self.parts = parts
        self.n_layers = len(parts.layers)
        self.held = held if held is not None else range(self.n_layers)
        self._kw = _layer_cache_keyword(parts.layers[self.held[0]])
        first = next(iter(parts.lm_head.parameters()))
        self.device = first.device
        self.dtype = first.dtype
        self._min = torch.finfo(self.dtype).min
        # Mid-layer polls (before each held layer's attention output projection, MLP and MLP
        # down projection): a stage notices a rejection within a fraction of a layer instead
        # of up to a whole one (~1 ms here). The hooks read this driver's current poll (None
        # outside run_layers).
        self._poll = None
        for i in self.held:
            for name in POLL_POINTS:
                sub = parts.layers[i].get_submodule(name) if _has(parts.layers[i], name) else None
                if sub is not None:
                    sub.register_forward_pre_hook(self._mid_layer_poll)

    def sync(self) -> None:
        """Wait for this driver's device (see ppsd_real.device); free on the CPU."""
        if self.device.type != "cpu":
            torch.cuda.synchronize(self.device)

    def _mid_layer_poll(self, module: torch.nn.Module, args: object) -> None:
        if self._poll is not None and self._poll():
            raise _Abandon

    # ---- cache -----------------------------------------------------------------------------
    def new_cache(self):
        """An empty DynamicCache shaped for this model's layer types."""
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.parts.config)
        except TypeError:
            return DynamicCache()

    @staticmethod
    def cache_len(cache, layer: int) -> int:
        """Tokens cached for one layer (0 if the layer has never run)."""
        if layer >= len(cache.layers):
            return 0
        return int(cache.layers[layer].get_seq_length())

    def crop(self, cache, start: int, stop: int, length: int) -> int:
        """Cut layers[start:stop] back to at most ``length`` tokens; returns tokens removed."""
        removed = 0
        for i in range(start, stop):
            extra = self.cache_len(cache, i) - length
            if extra > 0:
                cache.layers[i].crop(-extra)  # negative count: valid in old and new versions
                removed += extra
        return removed

    # ---- compute ---------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, token_ids: list[int]) -> torch.Tensor:
        ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        return self.parts.embed(ids)

    def _mask(self, n_new: int, pos0: int) -> torch.Tensor | None:
        """Additive causal mask for ``n_new`` tokens after ``pos0`` cached ones (None for one
        token: it may see the whole cache, and the attention backends' implicit causal flag
        would be aligned wrongly for a multi-token step over a non-empty cache)."""
        if n_new == 1:
            return None
        q = torch.arange(pos0, pos0 + n_new, device=self.device)[:, None]
        k = torch.arange(pos0 + n_new, device=self.device)[None, :]
        mask = torch.zeros(n_new, pos0 + n_new, dtype=self.dtype, device=self.device)
        mask.masked_fill_(k > q, self._min)
        return mask[None, None]

    @torch.inference_mode()
    def run_layers(
        self, hidden: torch.Tensor, start: int, stop: int, cache, pos0: int, poll=None
    ) -> torch.Tensor | None:
        """Run layers[start:stop] on ``hidden`` (1, n, d) at positions pos0.. and cache their KV.

        ``poll()`` is called between layers; if it returns True the work is abandoned and None
        is returned (a rejection made it useless). Layers already run keep their new entries,
        to be cropped by the caller.
        """
        n = hidden.shape[1]
        self.crop(cache, start, stop, pos0)
        pos = torch.arange(pos0, pos0 + n, device=self.device)[None, :]
        rope = self.parts.rotary(hidden, pos)
        mask = self._mask(n, pos0)
        self._poll = poll
        try:
            for i in range(start, stop):
                if poll is not None and i > start and poll():
                    return None
                out = self.parts.layers[i](
                    hidden,
                    attention_mask=mask,
                    position_ids=pos,
                    position_embeddings=rope,
                    use_cache=True,
                    **{self._kw: cache},
                )
                hidden = out[0] if isinstance(out, tuple) else out
        except _Abandon:
            return None  # this layer's attention already cached its entry: cropped later
        finally:
            self._poll = None
        return hidden

    @torch.inference_mode()
    def draft_token(
        self, hidden: torch.Tensor, head: torch.nn.Module | None, poll, chunks: int = 4
    ) -> int | None:
        """Greedy draft from the last position, the head's vocabulary rows in ``chunks`` with
        ``poll()`` between them; None if it returns True. Why: a verdict tends to arrive while
        the exit stage runs its head (~0.7 ms here, as long as a layer) and a rejection should
        not wait for it. Drafts are proposals only, so this never affects losslessness."""
        w = (head or self.parts.lm_head).weight
        h = self.parts.norm(hidden[:, -1:])[0, 0]
        best, best_i = None, 0
        step = -(-w.shape[0] // chunks)
        for a in range(0, w.shape[0], step):
            if a and poll():
                return None
            logits = torch.mv(w[a : a + step], h)
            v, i = logits.max(0)
            if best is None or v > best:
                best, best_i = v, a + int(i)
        return best_i

    @torch.inference_mode()
    def head(self, hidden: torch.Tensor, head: torch.nn.Module | None = None) -> torch.Tensor:
        """Greedy tokens from final norm + LM head (or a separate head) at every position."""
        h = self.parts.norm(hidden)
        logits = (head or self.parts.lm_head)(h)
        return logits[0].argmax(-1)
