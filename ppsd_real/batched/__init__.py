"""Batched decoding on the real layers: several sequences of different lengths at once
(``cache``: the ragged per-row KV cache; ``driver``: the layers called with a batch axis)."""
