"""Benchmark (not a test): PPSD/EESD speed on the CPU preset, interleaved with its baselines.

python benchmarks/real_speed.py [--tokens 128] [--repeats 5] [--transports pipe,gloo]

Timed through ``ppsd_real.bench`` (the loop ``ppsd run`` and calibration use): every variant
interleaved repeat after repeat, one warm-up repeat excluded, AR with one thread measured right
before and after each repeat's variants, every output checked token for token against AR.
"AR all cores" is AR with ``os.cpu_count()`` torch threads.

The ideal bound 1/(αc+1-α) uses c from full-model steps (draft path embed + layers[0:E] + EE
head over T = one AR token, all timed inside full-model steps: what an AR run pays). The c the
pipeline really sees is lower: its stage 0 runs with only its own weights hot. Both are printed;
"measured/ideal" uses the full-model c.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ppsd_real import runner
from ppsd_real.bench import Bench, Variant, measure, timed
from ppsd_real.decoders import ARDecoder, DecodeResult
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.profiler import profile
from ppsd_real.threads import all_cores, torch_threads
from ppsd_sim.analytic import ppsd_ideal_speedup
from ppsd_sim.records import SchemeConfig

ALPHAS = (0.5, 0.8, 0.95, 1.0)


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} [{min(xs):.3f}–{max(xs):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--preset", default="cpu-bench")
    ap.add_argument("--transports", default="pipe", help="comma-separated: pipe,gloo")
    args = ap.parse_args()
    with torch_threads(1):
        bench(args)


def bench(args: argparse.Namespace) -> None:
    load0 = os.getloadavg()
    spec = ModelSpec(args.preset)
    m = runner.load(spec)
    n_layers, n, cores = m.n_layers, args.tokens, all_cores()
    e = n_layers // 2
    prof = profile(m, 20)
    t_ar = prof.ar_token_time()
    c = (prof.embed.median + prof.layers_time(0, e) + prof.ee_head.median) / t_ar
    prompt = [1 + i * 13 % (m.vocab - 1) for i in range(8)]
    eesd, ppsd = SchemeConfig.eesd(e, 4), SchemeConfig.ppsd((e, n_layers))
    ref = ARDecoder(m.driver).decode(prompt, n).tokens
    transports = args.transports.split(",")
    ids = torch.tensor([prompt])

    def generate(**kw: object) -> DecodeResult:
        return timed(
            lambda: m.model.generate(
                ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kw
            ),
            lambda out: out[0, len(prompt) :].tolist(),
        )

    def ar_all_cores(rep: int) -> DecodeResult:
        with torch_threads(cores):
            return ARDecoder(m.driver).decode(prompt, n)

    m.model.generation_config.num_assistant_tokens = 4
    m.model.generation_config.assistant_confidence_threshold = 0.0
    with Bench() as session:
        bes = {
            tr: session.backend(
                tr,
                lambda tr=tr: runner.open_distributed(
                    spec, ppsd, n_layers, DrafterSpec(), transport=tr
                ),
            )
            for tr in transports
        }
        hops = {tr: b.hop_latency(220)[20:] for tr, b in bes.items()}
        st0 = bes[transports[0]].stage_latency(32, 1.0, together=False)[0]
        variants = [
            Variant("ar_all_cores", ar_all_cores, lossless=False),
            Variant("generate", lambda rep: generate(), lossless=False),
        ]
        for a in ALPHAS:
            for tr, be in bes.items():
                variants.append(
                    Variant(
                        f"ppsd{a}_{tr}",
                        lambda rep, a=a, be=be: be.run(
                            prompt, n, DrafterSpec("oracle", a, rep), ref
                        ),
                    )
                )
            variants.append(
                Variant(
                    f"eesd{a}",
                    lambda rep, a=a: runner.run_local(
                        m, eesd, DrafterSpec("oracle", a, rep), prompt, n, ref
                    ),
                )
            )
        be0 = bes[transports[0]]
        variants += [
            Variant("ppsd_ee", lambda rep: be0.run(prompt, n, DrafterSpec(), ref)),
            Variant(
                "eesd_ee", lambda rep: runner.run_local(m, eesd, DrafterSpec(), prompt, n, ref)
            ),
            Variant("peer", lambda rep: generate(assistant_early_exit=e), lossless=False),
        ]
        base = Variant("ar", lambda rep: ARDecoder(m.driver).decode(prompt, n))
        got = measure(variants, base, ref, repeats=args.repeats)
    load = session.load
    draft_stage = (
        statistics.median(st0["embed"])
        + sum(statistics.median(x) for x in st0["layers"])
        + statistics.median(st0["head"])
    )
    t = {name: s.times_s for name, s in got.series.items()}
    print(
        f"machine: {cores} cores, load at start {load0}, at end {os.getloadavg()}, "
        f"{'unknown load' if load is None else load.describe()}"
        f"{' (BUSY: figures unreliable)' if load is not None and load.busy else ''}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"model {spec.name} L={n_layers} E={e}, {n} tokens, {args.repeats} repeats")
    print(
        f"c (full-model steps, used for the bound) = {c:.3f}; stage 0 draft path in its own "
        f"process / full-model T = {draft_stage / t_ar:.3f}"
    )
    print(
        f"profile T (embed + layers + head, in full-model steps) {t_ar * 1e3:.2f} ms; "
        f"AR 1 thread measured {statistics.median(t['ar']) / n * 1e3:.2f} ms/token"
    )
    for tr, h in hops.items():
        print(f"hop one-way {tr}: {_ms([x * 1e6 for x in h])} µs")
    print(
        f"AR 1 thread {_ms(t['ar'])} s; AR {cores} threads (all cores) {_ms(t['ar_all_cores'])} s; "
        f"generate {_ms(t['generate'])} s"
    )
    print(
        f"AR1/AR{cores} time ratio {_ms(got.ratios('ar_all_cores'))}; "
        f"generate/AR1 {_ms(got.ratios('ar', 'generate'))}"
    )
    tr0 = transports[0]
    print(
        f"| α | PPSD vs AR 1 thr | vs AR {cores} thr (all cores) | ideal 1/(αc+1-α) | "
        "measured/ideal | EESD vs AR 1 thr |"
    )
    print("|---|---|---|---|---|---|")
    for a in ALPHAS:
        s1 = got.ratios(f"ppsd{a}_{tr0}")
        ideal = ppsd_ideal_speedup(a, c=c)
        print(
            f"| {a} | {_ms(s1)} | {_ms(got.ratios(f'ppsd{a}_{tr0}', 'ar_all_cores'))} | "
            f"{ideal:.2f} | {statistics.median(s1) / ideal:.2f} | {_ms(got.ratios(f'eesd{a}'))} |"
        )
    for tr in transports[1:]:
        for a in ALPHAS:
            s1 = got.ratios(f"ppsd{a}_{tr}")
            ideal = ppsd_ideal_speedup(a, c=c)
            print(
                f"PPSD over {tr}, α={a}: vs AR 1 thr {_ms(s1)} (measured/ideal "
                f"{statistics.median(s1) / ideal:.2f}); {tr0}/{tr} time ratio "
                f"{_ms(got.ratios(f'ppsd{a}_{tr}', f'ppsd{a}_{tr0}'))}"
            )
    acc = [sum(r.trace) / max(1, len(r.trace)) for r in got.series["ppsd_ee"].results]
    print(
        f"real early-exit drafter (acceptance {statistics.median(acc):.2f}): tok/s "
        f"PPSD {n / got.median_s('ppsd_ee'):.1f}, EESD {n / got.median_s('eesd_ee'):.1f}, "
        f"generate(assistant_early_exit={e}) {n / got.median_s('peer'):.1f}, "
        f"AR {n / got.median_s('ar'):.1f}"
    )


if __name__ == "__main__":
    main()
