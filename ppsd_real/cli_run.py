"""``ppsd run``: AR, EESD and PPSD on a real model, side by side, with named baselines."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from ppsd_real import runner
from ppsd_real.backends import BACKENDS
from ppsd_real.device import add_device_args, resolve
from ppsd_real.drafters import DRAFTERS, DrafterSpec
from ppsd_real.measure import to_record
from ppsd_real.model_loading import ModelSpec
from ppsd_real.presets import DEFAULT_CPU_PRESET, PRESETS
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig
from ppsd_sim.records.io import write_record


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--preset",
        default=None,
        help=f"random-weight model shape ({', '.join(PRESETS)}); default: the shipped trained "
        f"model ({SHIPPED_MODEL.name}) if present, else {DEFAULT_CPU_PRESET}",
    )
    a("--model-dir", default=None, help="a local Hugging Face model directory instead of a preset")
    a("--scheme", default="all", choices=("all", "ar", "eesd", "ppsd"))
    a("--exit", type=int, default=None, help="exit layer E (default L/2)")
    a("--gamma", type=int, default=4, help="EESD draft length")
    a("--stages", type=int, default=2, help="PPSD stages (even split, exit after stage 1)")
    a("--alpha", type=float, default=0.8, help="oracle drafter acceptance")
    a(
        "--drafter",
        default=None,
        choices=DRAFTERS,
        help="default: early-exit for a trained model directory, oracle for a random preset",
    )
    a(
        "--shared-head",
        action="store_true",
        help="early-exit: use the model's own LM head even when a trained EE head is shipped",
    )
    a("--backend", default="distributed", choices=BACKENDS, help="PPSD backend")
    a(
        "--transport",
        default="pipe",
        choices=("pipe", "gloo"),
        help="between stage processes: OS pipes (lighter on CPU) or torch.distributed (gloo)",
    )
    a("--tokens", type=int, default=128)
    a("--seed", type=int, default=0)
    a("--repeats", type=int, default=3, help="timed repeats per scheme (median reported)")
    a("--output", default=None, help="write the PPSD (or single scheme) RunRecord JSON here")
    a(
        "--records",
        default=None,
        help="a folder: write every measured scheme's RunRecord there (eesd.json, ppsd.json)",
    )
    add_device_args(parser)


#: The project's own trained model (ppsd_real/lm), the default when it is shipped.
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "stdlib-lm"
PROMPT_MODULE = "textwrap.py"  # a held-out module (ppsd_real.lm.corpus.HELD_OUT)


def text_prompt(model_dir: str | None, n_tokens: int = 64) -> list[int] | None:
    """Real text for a model that has a tokenizer: the start of a held-out stdlib module, so a
    trained model's early-exit acceptance is measured on text it did not train on."""
    if not model_dir or not (Path(model_dir) / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    from ppsd_real.lm.corpus import load_corpus

    held = [p for p in load_corpus().held_out if p.name == PROMPT_MODULE]
    if not held:
        return None
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    return tok.encode(held[0].read_text(encoding="utf-8", errors="replace")).ids[:n_tokens]


def run(args: argparse.Namespace) -> int:
    if args.tokens < 1:
        raise ConfigError("tokens", f"must be >= 1, got {args.tokens}")
    if args.preset and args.model_dir:
        raise ConfigError("model", "give --preset or --model-dir, not both")
    torch.set_num_threads(1)
    model_dir = args.model_dir
    if model_dir is None and args.preset is None and SHIPPED_MODEL.is_dir():
        model_dir = str(SHIPPED_MODEL)
    device, dtype = resolve(args.device, args.dtype)
    spec = ModelSpec(
        preset=None if model_dir else (args.preset or DEFAULT_CPU_PRESET),
        path=model_dir,
        seed=args.seed,
        dtype=dtype,
        device=device,
    )
    kind = args.drafter or ("early-exit" if model_dir else "oracle")
    m = runner.load(spec)
    n_layers = m.n_layers
    e = args.exit if args.exit is not None else n_layers // 2
    if not 1 <= e < n_layers:
        raise ConfigError("exit", f"must satisfy 1 <= E < L = {n_layers}, got {e}")
    head = None
    if kind == "early-exit" and model_dir and not args.shared_head:
        trained = Path(model_dir) / f"ee_head_exit{e}.safetensors"
        head = str(trained) if trained.is_file() else None
    drafter = DrafterSpec(kind, args.alpha if kind == "oracle" else None, args.seed, head)
    schemes = {
        "ar": SchemeConfig.ar(),
        "eesd": SchemeConfig.eesd(e, args.gamma),
        "ppsd": SchemeConfig.ppsd_split(
            n_layers, args.stages, e, stages_field="--stages", exit_field="--exit"
        ),
    }
    wanted = list(schemes) if args.scheme == "all" else ["ar", args.scheme]
    prompt = text_prompt(model_dir) or [
        1 + (args.seed * 7 + i * 13) % (m.vocab - 1) for i in range(8)
    ]
    ref = runner.run_local(m, schemes["ar"], drafter, prompt, args.tokens, None).tokens
    times: dict[str, list[float]] = {}
    results = {}
    be = None
    if "ppsd" in wanted and args.backend == "distributed":
        be = runner.open_distributed(
            spec, schemes["ppsd"], n_layers, drafter, transport=args.transport
        )
    try:
        from tqdm import tqdm

        for _ in tqdm(range(args.repeats + 1), desc="ppsd run", leave=False):
            for name in wanted:
                if name == "ar2":
                    continue
                if name == "ppsd" and be is not None:
                    r = be.run(prompt, args.tokens, drafter, ref)
                else:
                    r = runner.run_local(m, schemes[name], drafter, prompt, args.tokens, ref)
                if r.tokens != ref:
                    raise RuntimeError(f"{name} output differs from AR: not lossless")
                times.setdefault(name, []).append(r.time_s)
                results[name] = r
            torch.set_num_threads(2)
            t0 = time.perf_counter()
            runner.run_local(m, schemes["ar"], drafter, prompt, args.tokens, None)
            times.setdefault("ar2", []).append(time.perf_counter() - t0)
            torch.set_num_threads(1)
            t0 = time.perf_counter()  # the library's own greedy decoding, same model and thread
            m.model.generate(
                torch.tensor([prompt], device=spec.device),
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
            )
            times.setdefault("generate", []).append(time.perf_counter() - t0)
    finally:
        if be is not None:
            be.close()
    med = {k: statistics.median(v[1:] or v) for k, v in times.items()}
    base = {"ar_1thread": med["ar"], "ar_all_cores": med["ar2"], "generate": med["generate"]}
    print(
        f"model {spec.name}, L={n_layers}, E={e}, drafter {drafter.label()}, "
        f"{args.tokens} tokens, median of {args.repeats} (warm-up excluded)"
    )
    print(
        f"{'scheme':40} {'tok/s':>8} {'accept':>7} {'vs AR 1 thread':>15} {'vs AR 2 threads':>16}"
        f" {'vs generate':>12}"
    )
    rec = None
    records = {}
    names = {"ar2": "AR (2 threads)", "generate": "model.generate (1 thread)"}
    for name in [*wanted, "ar2", "generate"]:
        label = names.get(name) or schemes[name].label()
        if name == "ppsd":
            label += f" [{args.backend}" + (
                f", {args.transport}]" if args.backend == "distributed" else "]"
            )
        r = results.get(name)
        acc = f"{sum(r.trace) / len(r.trace):.2f}" if r is not None and r.trace else "-"
        print(
            f"{label:40} {args.tokens / med[name]:8.1f} {acc:>7} "
            f"{med['ar'] / med[name]:14.2f}x {med['ar2'] / med[name]:15.2f}x"
            f" {med['generate'] / med[name]:11.2f}x"
        )
        if r is not None and name != "ar":
            r.time_s = med[name]
            engine = "real/distributed" if name == "ppsd" and be is not None else "real/sequential"
            rec = to_record(
                r,
                schemes[name],
                engine,
                spec,
                1,
                base,
                "ar_1thread",
                args.alpha if kind == "oracle" else None,
                args.seed,
            )
            records[name] = rec
    for name, r_ in records.items() if args.records else ():
        path = write_record(Path(args.records) / f"{name}.json", r_)
        print(f"wrote {path}")
    if args.output and rec is not None:
        write_record(args.output, rec)
        print(f"wrote {args.output}")
    return 0
