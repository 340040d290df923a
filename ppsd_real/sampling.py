"""Sampling settings and the one place where a draft is judged at temperature > 0.

Every decoder (AR, EESD, PPSD on any backend) calls these functions, so the draft distribution
q (early-exit head) and the target p (full model) are warped the same way and judged by the same
rule:

- ``warp``: temperature, then top-k, then top-p (nucleus), the order transformers' ``generate``
  applies them, giving a probability vector;
- ``judge``: exact speculative sampling (Leviathan et al., arXiv 2211.17192; Chen et al.,
  arXiv 2302.01318): a draft x ~ q is accepted with probability min(1, p(x)/q(x)); on rejection
  the committed token is drawn from norm(max(0, p − q)). The committed token is then distributed
  exactly as p, whatever q is;
- ``draw``: a token from a distribution with a uniform that is a pure function of (seed,
  position, purpose), so a decoder's output is fixed by its seed whatever the timing (a PPSD
  stage that abandons and redoes work draws the same numbers again), and work on a flushed branch
  consumes no randomness that a committed token depends on.

Greedy decoding (temperature 0) never comes here: it stays the argmax path of the decoders.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.sampling import GREEDY, MAX_SEED, SamplingSpec

__all__ = [
    "ACCEPT",
    "DRAFT",
    "GREEDY",
    "MAX_SEED",
    "RESIDUAL",
    "TARGET",
    "JudgeRule",
    "SamplingSpec",
    "draft_from",
    "draw",
    "expected_acceptance",
    "judge",
    "probs",
    "residual",
    "target_from",
    "uniform",
    "warp",
]

#: What a keyed uniform is for (the Philox counter's second word).
DRAFT, ACCEPT, RESIDUAL, TARGET = 0, 1, 2, 3


def warp(logits: torch.Tensor, spec: SamplingSpec) -> torch.Tensor:
    """Probabilities (float64, last dim) after temperature, top-k and top-p.

    top-p keeps the smallest set of most likely tokens whose mass reaches ``top_p`` (at least
    one token); ties are broken by token id, so the kept set is deterministic."""
    if spec.greedy:
        raise ConfigError("temperature", "warp() is for sampling; greedy takes the argmax")
    x = logits.detach().to(torch.float64) / spec.temperature
    if spec.top_k is not None and spec.top_k < x.shape[-1]:
        kth = torch.topk(x, spec.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, -math.inf)
    probs = torch.softmax(x, dim=-1)
    if spec.top_p < 1.0:
        order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(order.values, dim=-1) - order.values  # mass of better tokens
        drop_sorted = before >= spec.top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order.indices, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def probs(logits: torch.Tensor, spec: SamplingSpec) -> torch.Tensor:
    """``warp`` on the host: the judging and drawing read single entries of these vectors, and
    a stage sends them to the controller as raw bytes, so they live on the CPU."""
    return warp(logits, spec).cpu()


def uniform(seed: int, position: int, purpose: int) -> float:
    """A uniform in [0, 1) that depends only on (seed, position, purpose) (Philox counter)."""
    bits = np.random.Philox(key=seed, counter=[position, purpose, 0, 0]).random_raw()
    return (int(bits) >> 11) * (1.0 / 9007199254740992.0)  # 53 bits


def draw(probs: torch.Tensor, u: float) -> int:
    """The token at quantile ``u`` of ``probs`` (inverse CDF; zero-probability tokens are never
    chosen)."""
    cdf = torch.cumsum(probs.to(torch.float64), dim=-1)
    target = u * float(cdf[-1])
    i = int(torch.searchsorted(cdf, torch.tensor([target], dtype=torch.float64), right=True)[0])
    i = min(i, probs.shape[-1] - 1)
    while probs[i] <= 0 and i > 0:  # u landed on a flat stretch of the CDF's right end
        i -= 1
    return i


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p − q)): where a rejected draft's replacement comes from."""
    r = torch.clamp(p - q, min=0.0)
    total = float(r.sum())
    if total <= 0.0:  # p == q: a rejection has probability 0; never reached with exact inputs
        return p
    return r / total


def expected_acceptance(p: torch.Tensor, q: torch.Tensor) -> float:
    """Σ_x min(p(x), q(x)) = 1 − total variation distance: the probability that a draft from
    q is accepted against p (far less noisy than the realised 0/1 outcome)."""
    return float(torch.minimum(p, q).sum())


#: A judging rule: (draft, p, q, seed, position) -> (accepted, committed token).
JudgeRule = Callable[[int, torch.Tensor, torch.Tensor, int, int], tuple[bool, int]]


def judge(
    draft: int, p: torch.Tensor, q: torch.Tensor, seed: int, position: int
) -> tuple[bool, int]:
    """Exact speculative sampling of one draft at ``position``: (accepted, committed token)."""
    qx = float(q[draft])
    ratio = 1.0 if qx <= 0.0 else min(1.0, float(p[draft]) / qx)
    if uniform(seed, position, ACCEPT) < ratio:
        return True, draft
    return False, draw(residual(p, q), uniform(seed, position, RESIDUAL))


def draft_from(q: torch.Tensor, seed: int, position: int) -> int:
    """The draft for ``position`` sampled from the warped early-exit distribution q."""
    return draw(q, uniform(seed, position, DRAFT))


def target_from(p: torch.Tensor, seed: int, position: int) -> int:
    """A token for ``position`` sampled from the full model (AR sampling, an EESD bonus token,
    or a PPSD position whose draft was never judged)."""
    return draw(p, uniform(seed, position, TARGET))
