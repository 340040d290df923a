"""``ppsd accept``: measured acceptance (greedy, or sampled at the settings given) per exit layer of a local model on your prompts.

Everything the command can check is checked before the model's weights load: the outputs are
writable, the folder is a model of a supported architecture, the exits lie in 1..L-1, the
prompts tokenise and fit the model's context, heads belong to this model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ppsd_real.model_loading import SHIPPED_MODEL
from ppsd_sim.errors import ConfigError

PROMPT_SETS = ("stdlib-held-out",)


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--model-dir",
        default=None,
        help=f"a local Hugging Face model folder (default: the shipped {SHIPPED_MODEL.name})",
    )
    from ppsd_real.prompts import add_prompt_args

    add_prompt_args(parser)
    g = parser.add_argument_group("prompt set (instead of --prompt/--prompt-file)")
    g.add_argument(
        "--prompt-set",
        default=None,
        choices=PROMPT_SETS,
        help="the project's example: windows of the stdlib's held-out text (default for the "
        "shipped model; the model card's own windows, pinned in its folder, when --prompts and "
        "--prompt-tokens are the card's)",
    )
    g.add_argument("--prompts", type=int, default=16, help="prompts taken from --prompt-set")
    g.add_argument("--prompt-tokens", type=int, default=64, help="tokens per --prompt-set prompt")
    a("--tokens", type=int, default=128, help="greedy tokens generated per prompt")
    a("--exits", default=None, help="exit layers, e.g. 1,3,5 or 2-6 (default: all 1..L-1)")
    a("--heads", default=None, help="a heads folder (ppsd heads train): also measure those heads")
    a("--gammas", default="1,2,4,8", help="EESD draft lengths to replay (τ, α_i, marginal rate)")
    a("--out", default=None, help="write the AcceptanceRecord JSON here")
    a(
        "--curve-out",
        default=None,
        help="also write the α(E) curve (shared head, or trained with --curve-head) for "
        "`ppsd plan --curve-file`",
    )
    a("--curve-head", default="shared", choices=("shared", "trained"))
    a(
        "--trace-out",
        default=None,
        help="also write one exit's 0/1 trace for `ppsd sim --acceptance-trace` (--trace-exit)",
    )
    a("--trace-exit", type=int, default=None, help="exit layer of --trace-out")
    d = parser.add_argument_group(
        "decoding (default greedy; each temperature × top-k × top-p is measured, expected and "
        "realised acceptance of the exact sampling rule)"
    )
    d.add_argument(
        "--temperature",
        "--temperatures",
        dest="temperatures",
        action="append",
        help="sampling temperature(s), repeatable or comma-separated, e.g. 0,0.7,1.0 (0 = greedy)",
    )
    d.add_argument(
        "--top-k", "--top-ks", dest="top_ks", action="append", help="top-k value(s) (default off)"
    )
    d.add_argument(
        "--top-p", "--top-ps", dest="top_ps", action="append", help="top-p value(s) (default 1.0)"
    )
    d.add_argument(
        "--seed", type=int, default=None, help="sampling seed (default 0): same seed, same record"
    )
    a("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    a("--no-progress", action="store_true", help="no progress bar")
    from ppsd_real.device import add_device_args

    add_device_args(parser)


def _ints(field: str, text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(field, f"must be comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ConfigError(field, f"must be integers >= 1, got {text!r}")
    return vals


def resolve_prompts(args: argparse.Namespace, model_dir: str, shipped: bool) -> tuple[list, str]:
    """The prompts the flags name, tokenised, and a label of their source."""
    from ppsd_real import prompts
    from ppsd_real.lm import card_eval

    given = [n for n in ("prompt", "prompt_file", "prompt_set") if getattr(args, n) is not None]
    if len(given) > 1:
        flags = " and ".join("--" + n.replace("_", "-") for n in given)
        raise ConfigError("--prompt", f"give one prompt source, not {flags}")
    prompt_set = args.prompt_set or (None if given else "stdlib-held-out" if shipped else None)
    if prompt_set == "stdlib-held-out":
        if args.prompts < 1 or args.prompt_tokens < 1:
            field = "--prompts" if args.prompts < 1 else "--prompt-tokens"
            raise ConfigError(field, "must be >= 1")
        got, pinned = card_eval.held_out(model_dir, args.prompts, args.prompt_tokens)
        where = f", pinned in {card_eval.FILE}" if pinned else ""
        return got, f"stdlib-held-out ({args.prompts} × {args.prompt_tokens} tokens{where})"
    if not given:
        raise ConfigError(
            "--prompt", "give --prompt TEXT, --prompt-file FILE or --prompt-set for this model"
        )
    got = prompts.load_prompts(model_dir, args.prompt, args.prompt_file, args.chat)
    return got, "--prompt" if args.prompt is not None else f"--prompt-file {args.prompt_file}"


def run(args: argparse.Namespace) -> int:
    from ppsd_real import accept, prompts, runner
    from ppsd_real.arch.support import check_config, text_config
    from ppsd_real.device import resolve
    from ppsd_real.lm.heads import HeadsManifest, load_heads
    from ppsd_real.measure import provenance
    from ppsd_real.model_loading import ModelSpec, model_fingerprint, read_config
    from ppsd_real.threads import check_threads, torch_threads
    from ppsd_sim.records.io import check_writable, dumps, write_all

    if args.tokens < 1:
        raise ConfigError("--tokens", f"must be >= 1, got {args.tokens}")
    gammas = _ints("--gammas", args.gammas)
    settings = accept.decoding_grid(args.temperatures, args.top_ks, args.top_ps, args.seed)
    if len(settings) > 1:
        for flag in ("--curve-out", "--trace-out"):
            if getattr(args, flag[2:].replace("-", "_")):
                raise ConfigError(
                    flag,
                    f"writes one decoding setting's data; {len(settings)} are measured "
                    f"({', '.join(s.label() for s in settings)}): give one, or read --out",
                )
    outs = {}
    for flag, path in (
        ("--out", args.out),
        ("--curve-out", args.curve_out),
        ("--trace-out", args.trace_out),
    ):
        if path:
            outs[flag] = check_writable(path, flag)
    if args.trace_out and args.trace_exit is None:
        raise ConfigError("--trace-exit", "is needed with --trace-out")
    model_dir = args.model_dir or str(SHIPPED_MODEL)
    shipped = Path(model_dir).resolve() == SHIPPED_MODEL
    config = read_config(model_dir, "--model-dir")
    check_config(config, "--model-dir")
    n_layers = int(text_config(config).num_hidden_layers)
    exits = accept.parse_exits(args.exits, n_layers)
    if args.trace_exit is not None and args.trace_exit not in exits:
        raise ConfigError("--trace-exit", f"must be one of the measured exits {list(exits)}")
    plist, source = resolve_prompts(args, model_dir, shipped)
    field = "--prompt-file" if args.prompt_file else "--prompt"
    prompts.check_context(plist, args.tokens, prompts.context_limit(config), field)
    device, dtype = resolve(args.device, args.dtype)
    spec = ModelSpec(preset=None, path=model_dir, dtype=dtype, device=device)
    fingerprint = model_fingerprint(spec)
    heads_info = None
    if args.heads:
        man = HeadsManifest.read(args.heads)
        man.check_base(fingerprint)
        if args.curve_out and args.curve_head == "trained" and not set(man.exits) & set(exits):
            raise ConfigError("--curve-head", "the heads cover none of the measured exits")
        heads_info = {"dir": str(args.heads), "exits": list(man.exits), "corpus": man.corpus}
    elif args.curve_head == "trained" and args.curve_out:
        raise ConfigError("--curve-head", "trained needs --heads")
    threads = torch.get_num_threads() if args.threads is None else check_threads(args.threads)
    with torch_threads(threads):
        m = runner.load(spec)
        heads = load_heads(args.heads, fingerprint, m.driver.parts.lm_head) if args.heads else {}
        tok = prompts.load_tokenizer(model_dir, "--show-text") if args.show_text else None

        def show(pr: Any, cont: list[int]) -> None:
            if tok is not None:
                print(f"--- {pr.source}: {len(pr.ids)} prompt tokens, continuation:")
                print(prompts.decode(tok, cont))

        rec = accept.measure(
            m,
            plist,
            args.tokens,
            exits,
            heads=heads,
            heads_info=heads_info,
            gammas=gammas,
            fingerprint=fingerprint,
            prompt_source=source,
            progress=not args.no_progress,
            provenance=provenance(spec, torch.get_num_threads()),
            on_continuation=show,
            settings=settings,
        )
        print(render(rec))
        files: dict[Any, str] = {}
        if "--out" in outs:
            files[outs["--out"]] = rec.to_json()
        dec = accept.decoding_of(settings[0])
        if "--curve-out" in outs:
            ex, al = rec.curve(args.curve_head, decoding=dec)
            at = "" if dec.greedy else f", {settings[0].label()} (expected α)"
            curve = {
                "record": "AcceptanceCurve",
                "exits": list(ex),
                "alphas": list(al),
                "source": "measured",
                "note": f"ppsd accept, {args.curve_head} head, {rec.model['name']}, {source}{at}",
            }
            if not dec.greedy:
                curve["decoding"] = dec.to_dict()
            files[outs["--curve-out"]] = dumps(curve)
        if "--trace-out" in outs:
            head = "trained" if args.trace_exit in heads else "shared"
            trace: dict[str, Any] = {"trace": rec.trace(args.trace_exit, head, decoding=dec)}
            if not dec.greedy:
                trace["decoding"] = dec.to_dict()
            files[outs["--trace-out"]] = dumps(trace)
        if files:
            for p in write_all(files):
                print(f"wrote {p}")
        return 0


def render(rec: Any) -> str:
    """The record as a table: α ± standard error, ρ, and per γ the marginal rate and τ; one
    table per decoding setting, sampled ones with the expected α ± se before the realised."""
    g = rec.gammas
    decs = rec.decodings()
    only_greedy = all(d.greedy for d in decs)
    lines = [
        f"model {rec.model['name']} ({rec.model['model_type']}, L={rec.model['n_layers']}); "
        f"{len(rec.prompts['prompt_tokens'])} prompts × {rec.prompts['new_tokens']} tokens "
        f"({rec.prompts['source']}); "
        + ("greedy" if only_greedy else f"{len(decs)} decoding settings"),
    ]

    def f(x: float | None, nd: int = 3) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    for dec in decs:
        sampled = not dec.greedy
        head = (
            f"{'exit':>4} {'head':8}"
            + (f" {'E[α]':>6} {'± se':>6}" if sampled else "")
            + f" {'α':>6} {'± se':>6} {'ρ':>6}"
            + "".join(f" {'rate γ=' + str(x):>9} {'τ γ=' + str(x):>7}" for x in g)
        )
        if not only_greedy:
            lines.append(
                f"decoding {dec.label()}: "
                + (
                    "E[α] = mean Σ min(p, q); α realised (exact rule)"
                    if sampled
                    else "α = argmax agreement"
                )
            )
        lines.append(head)
        for e in rec.exits:
            if e.decoding != dec:
                continue
            row = f"{e.exit:>4} {e.head:8}"
            if sampled:
                row += f" {f(e.expected_alpha):>6} {f(e.expected_se):>6}"
            row += f" {f(e.alpha):>6} {f(e.alpha_se):>6} {f(e.burstiness):>6}"
            for x in g:
                s = e.gamma_stats(x)
                row += f" {f(s.marginal_rate):>9} {f(s.tau, 2):>7}"
            lines.append(row)
    if rec.notes:
        lines.append(f"note: {rec.notes}")
    return "\n".join(lines)
