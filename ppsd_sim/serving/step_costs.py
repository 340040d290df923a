"""What a batched step costs: the load forms of the per-step costs in ``ppsd_sim.costs``.

Each function takes the load of one step — ``T`` new tokens, ``K`` cached KV tokens read (the
sum over the step's sequences) — and composes the profile's ``load_costs()`` the way
``ppsd_sim.costs`` composes the batch-1 latencies: the embedding where tokens enter, the layers
a step runs, the heads where logits are needed, one ``tick`` per step, the contention slowdown
on pipeline stages. With one token and a profile without ``batched`` costs every form equals
its ``ppsd_sim.costs`` twin (tested), which is what makes one request at batch 1 reproduce the
batch-1 simulator. A prefill step runs a whole prompt (no chunking) and needs logits for the
last prompt token of each sequence only; its attention over the new tokens themselves (a term
quadratic in the prompt length) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim.costs import contention
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.load_cost import LoadCost, TensorParallel
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig


def _grid_max(*costs: LoadCost) -> int | None:
    """The largest step size a profile measured (None: a linear form, valid everywhere)."""
    sizes = [c.tokens[-1] for c in costs if c.is_grid and len(c.tokens) > 1]
    return min(sizes) if sizes else None


@dataclass(frozen=True)
class DeviceSteps:
    """Steps of the single-device schemes (AR, EESD) and of TP-AR (every device runs its shard
    of every layer at once, then the all-reduces)."""

    layers: LoadCost  # all layers (TP: one shard of each, plus the all-reduces)
    early: LoadCost  # layers[0:E] (EESD)
    late: LoadCost  # layers[E:L] (EESD)
    embed: LoadCost
    ee_head: LoadCost
    final_head: LoadCost
    tick: float
    flush: float = 0.0
    gamma: int = 0
    cache_reuse: bool = True
    profiled_tokens: int | None = None
    draft_step: LoadCost | None = None  # a measured whole draft step (``BatchedCosts``)

    def decode(self, T: int, K: int) -> float:
        """One AR step of T sequences reading K cached tokens: embed + layers + head + tick."""
        return self.embed.time(T) + self.layers.time(T, K) + self.final_head.time(T) + self.tick

    def prefill(self, T: int, n: int) -> float:
        """Whole prompts of T tokens in all for n sequences; logits for n tokens."""
        return self.embed.time(T) + self.layers.time(T, 0) + self.final_head.time(n) + self.tick

    def draft(self, B: int, K: int) -> float:
        """One EESD draft step for B sequences: embed + layers[0:E] + EE head + tick (or the
        profile's whole draft step measured in rounds, where it has one at this exit)."""
        if self.draft_step is not None:
            return self.draft_step.time(B, K) + self.tick
        return self.embed.time(B) + self.early.time(B, K) + self.ee_head.time(B) + self.tick

    def verify(self, B: int, K_early: int, K: int) -> float:
        """One EESD verification of γ+1 tokens per sequence (``costs.eesd_costs`` under load):
        with cache reuse the early layers see only each sequence's last draft."""
        n = B * (self.gamma + 1)
        if self.cache_reuse:
            return (
                self.embed.time(B)
                + self.early.time(B, K_early)
                + self.late.time(n, K)
                + self.final_head.time(n)
                + self.tick
            )
        return self.embed.time(n) + self.layers.time(n, K) + self.final_head.time(n) + self.tick


def device_steps(profile: HardwareProfile, scheme: SchemeConfig) -> DeviceSteps:
    scheme.check_layers(profile.n_layers)
    L = profile.n_layers
    bc = profile.load_costs()
    tick = profile.tick.median
    if scheme.kind == "tp_ar":
        assert scheme.tp_degree is not None  # required for TP-AR by SchemeConfig
        tp = profile.tensor_parallel(scheme.tp_degree)
        joined = LoadCost.total(
            [tp.layers_cost(0, L), tp.allreduce.scaled(L * tp.allreduces_per_layer)]
        )
        return DeviceSteps(
            joined,
            joined,
            joined,
            tp.embed,
            tp.final_head,
            tp.final_head,
            tick,
            profiled_tokens=_grid_max(joined, tp.final_head),
        )
    if scheme.kind not in ("ar", "eesd"):
        raise ConfigError("scheme.kind", f"{scheme.label()} is not a single-device scheme")
    e = L if scheme.draft_exit_layer is None else scheme.draft_exit_layer
    return DeviceSteps(
        bc.layers_cost(0, L),
        bc.layers_cost(0, e),
        bc.layers_cost(e, L),
        bc.embed,
        bc.ee_head,
        bc.final_head,
        tick,
        flush=profile.flush.median,
        gamma=scheme.gamma or 0,
        cache_reuse=scheme.cache_reuse,
        profiled_tokens=_grid_max(*bc.layers, bc.final_head),
        draft_step=bc.draft_cost(e) if scheme.kind == "eesd" else None,
    )


@dataclass(frozen=True)
class StageSteps:
    """Steps of the pipeline schemes (PP-AR, PPSD), one device per stage. ``compute(s, T, K)``
    is stage s's layers (+ the embedding on stage 1), slowed by contention, + one tick: what
    ``costs.stage_compute`` is for one token. The exit stage then runs the EE head and the
    last stage the final head, as in ``costs.stage_busy``."""

    layers: tuple[LoadCost, ...]
    first_embed: LoadCost
    ee_head: LoadCost
    final_head: LoadCost
    hop: LoadCost | None
    hop_s: float
    tick: float
    flush: float
    slow: float
    exit_stage: int  # 0-based; -1 for PP-AR
    profiled_tokens: int | None = None

    @property
    def k(self) -> int:
        return len(self.layers)

    def compute(self, s: int, T: int, K: int) -> float:
        t = self.layers[s].time(T, K)
        if s == 0:
            t += self.first_embed.time(T)
        return t * self.slow + self.tick

    def ee(self, T: int) -> float:
        return self.ee_head.time(T) * self.slow

    def final(self, T: int) -> float:
        return self.final_head.time(T) * self.slow

    def send(self, T: int) -> float:
        """Hop of T hidden states to the next stage (the profile's one-token hop without a
        batched hop cost)."""
        return self.hop_s if self.hop is None else self.hop.time(T)


def stage_steps(profile: HardwareProfile, scheme: SchemeConfig) -> StageSteps:
    scheme.check_layers(profile.n_layers)
    if scheme.kind not in ("ppsd", "pp_ar"):
        raise ConfigError("scheme.kind", f"{scheme.label()} is not a pipeline scheme")
    devices = scheme.stage_devices()
    if len(set(devices)) != len(devices):
        raise ConfigError(
            "scheme.devices",
            "the serving model needs one device per stage (stages sharing a device are "
            "simulated at batch 1 only: ppsd sim)",
        )
    bc = profile.load_costs()
    layers = tuple(bc.layers_cost(st.start, st.stop) for st in scheme.stages())
    return StageSteps(
        layers=layers,
        first_embed=bc.embed,
        ee_head=bc.ee_head,
        final_head=bc.final_head,
        hop=bc.hop,
        hop_s=profile.hop.median,
        tick=profile.tick.median,
        flush=profile.flush.median,
        slow=contention(profile, devices),
        exit_stage=scheme.exit_stage - 1 if scheme.kind == "ppsd" else -1,
        profiled_tokens=_grid_max(*bc.layers, bc.final_head),
    )


def tp_from_profile(threaded: HardwareProfile, degree: int) -> TensorParallel:
    """TP-k costs from a profile measured with k threads in one process (on a CPU, TP-k *is*
    AR with k cores): its layers, embedding and head under load, no separate all-reduce (the
    threads' joins are inside the measured times)."""
    degree = validate.integer("degree", degree, lo=2)
    lc = threaded.load_costs()
    return TensorParallel(
        degree=degree,
        layers=lc.layers,
        embed=lc.embed,
        final_head=lc.final_head,
        allreduces_per_layer=0,
        notes=f"AR measured with {degree} threads in one process"
        + (f" ({threaded.provenance.device})" if threaded.provenance.device else ""),
    )
