"""Which architectures the runner can drive, decided before any weights are loaded.

Two stages, both before a single token is decoded:

1. ``check_config`` (here), from ``config.json`` alone: the model must be a decoder-only causal
   LM that transformers can build, and every layer's cache type must be one the runner can crop
   (full attention, sliding-window attention, linear attention / state-space, or a hybrid of
   those). Chunked attention (a different mask), indexed attention and layers that reuse
   another layer's KV cache are refused by name.
2. ``ppsd_real.layers.ModelParts.of`` after loading: the structure is learnt from one watched
   forward (``arch.observe``) and the layer-by-layer path checked against the model's own
   forward (``arch.probe``); whatever does not reproduce it is refused, naming the reason.
"""

from __future__ import annotations

from typing import Any

from ppsd_sim.errors import ConfigError

#: cache layer types the runner crops correctly (see ``arch.cache``)
CACHE_TYPES = ("full_attention", "sliding_attention", "linear_attention", "conv", "hybrid")

#: why other layer types are refused
REFUSED_TYPES = {
    "chunked_attention": "chunked attention (its mask is not a sliding window)",
    "indexed_attention": "indexed sparse attention",
    "hybrid_sliding": "sliding-window attention fused with a recurrent state in one layer",
    "dummy": "layers sharing another layer's KV cache",
}


def text_config(config: Any) -> Any:
    """The decoder's own config (a multimodal model nests it)."""
    get = getattr(config, "get_text_config", None)
    if get is None:
        return config
    try:
        return get(decoder=True)
    except TypeError:
        return get()


def layer_types(config: Any) -> list[str]:
    """The cache layer type of every decoder layer, as the library's DynamicCache builds it."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    types, _ = get_layer_types_and_kwargs(text_config(config))
    return list(types)


def check_config(config: Any, field: str = "model") -> None:
    """ConfigError (one line naming the architecture and why) if the runner cannot drive a
    model of this config layer by layer."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = str(getattr(config, "model_type", "") or type(config).__name__)
    if arch not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            field, f"{arch}: not a causal language model transformers can build (unsupported)"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(field, f"{arch}: an encoder-decoder model (unsupported: decoder-only)")
    try:
        types = layer_types(config)
    except Exception as err:  # a config the library itself cannot read into layer types
        raise ConfigError(field, f"{arch}: cannot read its layer types ({err})") from None
    for kind in types:
        if kind in REFUSED_TYPES:
            raise ConfigError(field, f"{arch}: {REFUSED_TYPES[kind]} (unsupported)")
        if kind not in CACHE_TYPES:
            raise ConfigError(field, f"{arch}: layer type {kind!r} (unsupported)")
