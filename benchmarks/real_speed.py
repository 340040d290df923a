"""Benchmark (not a test): PPSD/EESD speed on the CPU preset, interleaved with its baselines.

python benchmarks/real_speed.py [--tokens 128] [--repeats 5] [--transports pipe,gloo]

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
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.profiler import profile
from ppsd_sim.analytic import ppsd_ideal_speedup
from ppsd_sim.records import SchemeConfig


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} [{min(xs):.3f}–{max(xs):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--preset", default="cpu-bench")
    ap.add_argument("--transports", default="pipe", help="comma-separated: pipe,gloo")
    args = ap.parse_args()
    load0 = os.getloadavg()
    torch.set_num_threads(1)
    spec = ModelSpec(args.preset)
    m = runner.load(spec)
    n_layers, n = m.n_layers, args.tokens
    e = n_layers // 2
    prof = profile(m, 20)
    t_ar = prof.ar_token_time()
    c = (prof.embed.median + prof.layers_time(0, e) + prof.ee_head.median) / t_ar
    prompt = [1 + i * 13 % (m.vocab - 1) for i in range(8)]
    ar, eesd, ppsd = SchemeConfig.ar(), SchemeConfig.eesd(e, 4), SchemeConfig.ppsd((e, n_layers))
    ref = runner.run_local(m, ar, DrafterSpec(), prompt, n, None).tokens
    alphas = (0.5, 0.8, 0.95, 1.0)
    t: dict[str, list[float]] = {}
    transports = args.transports.split(",")
    bes = {
        tr: runner.open_distributed(spec, ppsd, n_layers, DrafterSpec(), transport=tr)
        for tr in transports
    }
    be = bes[transports[0]]
    hops = {tr: b.hop_latency(220)[20:] for tr, b in bes.items()}
    st0 = be.stage_latency(32, 1.0, together=False)[0]
    draft_stage = (
        statistics.median(st0["embed"])
        + sum(statistics.median(x) for x in st0["layers"])
        + statistics.median(st0["head"])
    )
    try:
        for rep in range(args.repeats + 1):
            row: dict[str, float] = {}
            torch.set_num_threads(1)
            row["ar1"] = runner.run_local(m, ar, DrafterSpec(), prompt, n, None).time_s
            torch.set_num_threads(2)
            row["ar2"] = runner.run_local(m, ar, DrafterSpec(), prompt, n, None).time_s
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            m.model.generate(
                torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False
            )
            row["generate"] = time.perf_counter() - t0
            for a in alphas:
                d = DrafterSpec("oracle", a, rep)
                r = be.run(prompt, n, d, ref)
                assert r.tokens == ref
                row[f"ppsd{a}"] = r.time_s
                for tr in transports[1:]:
                    r = bes[tr].run(prompt, n, d, ref)
                    assert r.tokens == ref
                    row[f"ppsd{a}_{tr}"] = r.time_s
                r = runner.run_local(m, eesd, d, prompt, n, ref)
                assert r.tokens == ref
                row[f"eesd{a}"] = r.time_s
            r = be.run(prompt, n, DrafterSpec(), ref)
            row["ppsd_ee"], row["ppsd_ee_acc"] = r.time_s, sum(r.trace) / max(1, len(r.trace))
            r = runner.run_local(m, eesd, DrafterSpec(), prompt, n, ref)
            row["eesd_ee"] = r.time_s
            m.model.generation_config.num_assistant_tokens = 4
            m.model.generation_config.assistant_confidence_threshold = 0.0
            t0 = time.perf_counter()
            m.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                assistant_early_exit=e,
            )
            row["peer"] = time.perf_counter() - t0
            if rep == 0:
                continue  # warm-up
            for k, v in row.items():
                t.setdefault(k, []).append(v)
    finally:
        for b in bes.values():
            b.close()
    ratio = lambda a, b: [x / y for x, y in zip(t[a], t[b], strict=True)]  # noqa: E731
    print(
        f"machine: {os.cpu_count()} cores, load at start {load0}, at end {os.getloadavg()}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"model {spec.name} L={n_layers} E={e}, {n} tokens, {args.repeats} repeats")
    print(
        f"c (full-model steps, used for the bound) = {c:.3f}; stage 0 draft path in its own "
        f"process / full-model T = {draft_stage / t_ar:.3f}"
    )
    print(
        f"profile T (embed + layers + head, in full-model steps) {t_ar * 1e3:.2f} ms; "
        f"AR 1 thread measured {statistics.median(t['ar1']) / n * 1e3:.2f} ms/token"
    )
    for tr, h in hops.items():
        print(f"hop one-way {tr}: {_ms([x * 1e6 for x in h])} µs")
    print(
        f"AR 1 thread {_ms(t['ar1'])} s; AR 2 threads {_ms(t['ar2'])} s; generate {_ms(t['generate'])} s"
    )
    print(
        f"AR1/AR2 time ratio {_ms(ratio('ar1', 'ar2'))}; generate/AR1 {_ms(ratio('generate', 'ar1'))}"
    )
    print(
        "| α | PPSD vs AR 1 thr | vs AR 2 thr | ideal 1/(αc+1-α) | measured/ideal | EESD vs AR 1 thr |"
    )
    print("|---|---|---|---|---|---|")
    for a in alphas:
        s1 = ratio("ar1", f"ppsd{a}")
        ideal = ppsd_ideal_speedup(a, c=c)
        print(
            f"| {a} | {_ms(s1)} | {_ms(ratio('ar2', f'ppsd{a}'))} | {ideal:.2f} | "
            f"{statistics.median(s1) / ideal:.2f} | {_ms(ratio('ar1', f'eesd{a}'))} |"
        )
    for tr in transports[1:]:
        for a in alphas:
            s1 = ratio("ar1", f"ppsd{a}_{tr}")
            ideal = ppsd_ideal_speedup(a, c=c)
            print(
                f"PPSD over {tr}, α={a}: vs AR 1 thr {_ms(s1)} (measured/ideal "
                f"{statistics.median(s1) / ideal:.2f}); {transports[0]}/{tr} time ratio "
                f"{_ms(ratio(f'ppsd{a}', f'ppsd{a}_{tr}'))}"
            )
    print(
        f"real early-exit drafter (acceptance {statistics.median(t['ppsd_ee_acc']):.2f}): tok/s "
        f"PPSD {n / statistics.median(t['ppsd_ee']):.1f}, EESD {n / statistics.median(t['eesd_ee']):.1f}, "
        f"generate(assistant_early_exit={e}) {n / statistics.median(t['peer']):.1f}, "
        f"AR {n / statistics.median(t['ar1']):.1f}"
    )


if __name__ == "__main__":
    main()
