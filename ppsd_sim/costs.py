"""Per-step costs of each scheme, composed from a HardwareProfile.

One place decides what a draft step, a verification pass or a pipeline stage costs, so the
closed forms, the SimPy model and the fast path can never disagree about the inputs.
Conventions (see GLOSSARY.md): every forward step pays one ``tick``; the embedding runs in
the first step/stage; verifying n tokens costs ``factor(n)`` × the one-token latency.

Sampled decoding (``decoding`` with temperature > 0) adds the profile's per-vector sampling
costs (``records.sampling_cost``) where the real decoders pay them: an AR token and every draft
warp one head output and draw from it; an EESD verification warps its γ+1 rows, judges up to γ
drafts and draws the bonus token (charged in full: the cost of a round that ends early is
slightly over-counted); in PPSD the exit stage samples each draft, the last stage warps p and
stage 0, which judges, pays one judge per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.sampling_cost import GREEDY_CHOICE, TokenChoice
from ppsd_sim.records.scheme import SchemeConfig


@dataclass(frozen=True)
class ArCosts:
    token: float  # T: embedding + all layers + final head + tick


@dataclass(frozen=True)
class EesdCosts:
    draft_step: float  # embedding + layers[0:E] + EE head + tick, per draft
    verify: float  # one verification pass over γ+1 tokens (+ tick)
    flush: float  # KV crop after a rejection
    gamma: int
    verify_extrapolated: bool  # γ+1 lies beyond the profiled verify sizes


@dataclass(frozen=True)
class PpsdCosts:
    """Stage s (0-based) spends ``compute[s]`` on a token's layers (+ embedding at stage 0,
    + tick), then the exit stage runs the EE head (``ee_head``) after sending the hidden
    state on, and the last stage runs the final head (``final_head``) before judging."""

    compute: tuple[float, ...]
    ee_head: float
    final_head: float
    hop: float
    flush: float
    exit_stage: int  # 0-based index of the stage whose output is drafted from
    devices: tuple[int, ...]

    @property
    def k(self) -> int:
        return len(self.compute)

    @property
    def dedicated(self) -> bool:
        """Every stage on its own compute unit (the fast path's exactness condition)."""
        return len(set(self.devices)) == len(self.devices)

    def busy_per_token(self, s: int) -> float:
        """Time stage s is occupied by one token."""
        t = self.compute[s]
        if s == self.exit_stage:
            t += self.ee_head
        if s == self.k - 1:
            t += self.final_head
        return t

    @property
    def draft_period(self) -> float:
        """P_e: time between two draft entries into stage 1 while drafts are accepted
        (only one token is ever inside stages 1..e)."""
        e = self.exit_stage
        return (
            sum(self.compute[: e + 1])
            + self.ee_head
            + (e * self.hop)
            + (self.hop if e > 0 else 0.0)
        )

    @property
    def accepted_gap(self) -> float:
        """Π: commit interval while drafts are accepted = the bottleneck of the draft loop
        and the stages after the exit stage."""
        after = [self.busy_per_token(s) for s in range(self.exit_stage + 1, self.k)]
        return max(self.draft_period, *after)

    @property
    def fill_latency(self) -> float:
        """G: from a token entering stage 1 of an empty pipeline to its verified commit."""
        return sum(self.compute) + (self.k - 1) * self.hop + self.final_head

    @property
    def rejected_gap(self) -> float:
        """Commit interval after a rejection: notify stage 1 (hop), crop, refill."""
        return self.fill_latency + self.hop + self.flush


def ar_costs(profile: HardwareProfile, decoding: DecodingSettings = GREEDY) -> ArCosts:
    return ArCosts(profile.ar_token_time() + profile.token_choice(decoding).sample)


def eesd_costs(
    profile: HardwareProfile, scheme: SchemeConfig, decoding: DecodingSettings = GREEDY
) -> EesdCosts:
    scheme.check_layers(profile.n_layers)
    e, g, n_layers = scheme.exit_layer, scheme.gamma, profile.n_layers
    if e is None or g is None:
        raise ConfigError("scheme", f"EESD costs need an EESD scheme, not {scheme.kind!r}")
    tick, embed = profile.tick.median, profile.embed.median
    choice = profile.token_choice(decoding)
    draft = embed + profile.layers_time(0, e) + profile.ee_head.median + choice.sample + tick
    f = profile.factor(g + 1)
    if scheme.cache_reuse:
        # Early layers already hold x0..d_{γ-1}: only the last draft passes them (1 token);
        # the late layers and the final head see all γ+1 tokens.
        verify = (
            embed
            + profile.layers_time(0, e)
            + (profile.layers_time(e, n_layers) + profile.final_head.median) * f
        )
    else:
        verify = embed * f + (profile.layers_time(0, n_layers) + profile.final_head.median) * f
    verify += (g + 1) * choice.warp + g * choice.judge + choice.draw
    return EesdCosts(
        draft, verify + tick, profile.flush.median, g, not profile.profiled_verify(g + 1)
    )


def stage_compute(
    profile: HardwareProfile,
    start: int,
    stop: int,
    *,
    first: bool,
    slow: float,
    choice: TokenChoice = GREEDY_CHOICE,
) -> float:
    """A PPSD stage's per-token compute before its heads: its layers (+ the embedding and,
    sampling, the judging on the first stage, which is the controller), slowed by contention,
    plus one tick."""
    t = profile.layers_time(start, stop)
    if first:
        t += profile.embed.median + choice.judge
    return t * slow + profile.tick.median


def stage_heads(
    profile: HardwareProfile,
    *,
    exit_: bool,
    last: bool,
    slow: float,
    choice: TokenChoice = GREEDY_CHOICE,
) -> tuple[float, float]:
    """(early-exit head, final head) per token on a stage that runs them (0 where it does
    not); sampling, the exit stage also warps q and draws the draft, the last stage warps p."""
    ee = (profile.ee_head.median + choice.sample) * slow if exit_ else 0.0
    final = (profile.final_head.median + choice.warp) * slow if last else 0.0
    return ee, final


def stage_busy(
    profile: HardwareProfile,
    start: int,
    stop: int,
    *,
    first: bool,
    exit_: bool,
    last: bool,
    slow: float,
    decoding: DecodingSettings = GREEDY,
) -> float:
    """Time one token occupies a PPSD stage: ``stage_compute`` plus the heads it runs
    (``PpsdCosts.busy_per_token`` in closed form)."""
    choice = profile.token_choice(decoding)
    t = stage_compute(profile, start, stop, first=first, slow=slow, choice=choice)
    return t + sum(stage_heads(profile, exit_=exit_, last=last, slow=slow, choice=choice))


def contention(profile: HardwareProfile, devices: tuple[int, ...]) -> float:
    """The slowdown stage compute pays: the profile's concurrency slowdown when the stages run
    on more than one device at once, 1 when they all share one."""
    return profile.concurrency_slowdown if len(set(devices)) > 1 else 1.0


def ppsd_costs(
    profile: HardwareProfile, scheme: SchemeConfig, decoding: DecodingSettings = GREEDY
) -> PpsdCosts:
    scheme.check_layers(profile.n_layers)
    devices = scheme.stage_devices()
    slow = contention(profile, devices)
    choice = profile.token_choice(decoding)
    compute = [
        stage_compute(profile, st.start, st.stop, first=st.first, slow=slow, choice=choice)
        for st in scheme.stages()
    ]
    ee_head, final_head = stage_heads(profile, exit_=True, last=True, slow=slow, choice=choice)
    return PpsdCosts(
        compute=tuple(compute),
        ee_head=ee_head,
        final_head=final_head,
        hop=profile.hop.median,
        flush=profile.flush.median,
        exit_stage=scheme.exit_stage - 1,
        devices=devices,
    )
