"""Benchmark (not a test): what ``ppsd accept`` and ``ppsd heads train`` cost, and what the
recurrent-state snapshots of linear-attention layers cost per step.

    python benchmarks/accept_speed.py [--model-dir DIR] [--threads 1] [--skip-heads]

1. accept: per prompt, the greedy continuation (``generate``: a fixed cost per token) and one
   pass of prompt + continuation through the layers with a head after each exit (the cost
   that grows with the exits). Reported per 1,000 generated tokens: generation, the pass with
   one exit, and the extra cost of each further exit.
2. heads train: training tokens per second with heads at every exit (batch × seq-len tokens
   per step through the frozen model, then one head per exit with its gradient).
3. snapshots: a linear-attention layer step of a tiny Qwen3-Next with and without the state
   snapshot the runner takes after it, and the clone time of one Qwen3-Next-80B-sized state
   (recurrent 32 × 128 × 128, conv 8192 × 4), fp32 and bf16.
A quiet machine is needed for figures worth publishing; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ppsd_real import accept, runner
from ppsd_real.arch import zoo
from ppsd_real.arch.cache import _snapshot
from ppsd_real.lm import heads
from ppsd_real.model_loading import ModelSpec

SHIPPED = Path(__file__).resolve().parents[1] / "ppsd_real" / "models" / "stdlib-lm"


def _median(f, repeats: int) -> float:
    xs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs)


def bench_accept(model_dir: str, prompts: int, prompt_tokens: int, tokens: int) -> None:
    m = runner.load(ModelSpec(preset=None, path=model_dir))
    L = m.n_layers
    ps = accept.stdlib_held_out(model_dir, prompts, prompt_tokens)
    gen = one = every = 0.0
    for p in ps:
        t0 = time.perf_counter()
        cont = accept.continuation(m.model, p.ids, tokens)
        gen += time.perf_counter() - t0
        one += _median(lambda p=p, c=cont: accept.exit_bits(m.driver, p.ids, c, (1,), {}), 3)
        every += _median(
            lambda p=p, c=cont: accept.exit_bits(m.driver, p.ids, c, tuple(range(1, L)), {}), 3
        )
    k = 1000 / (prompts * tokens)
    per_exit = (every - one) / max(L - 2, 1)
    print(f"accept on {m.spec.name} (L={L}), {prompts} prompts × {tokens} tokens:")
    print(f"  generation            {gen * k:8.3f} s per 1,000 tokens")
    print(f"  pass with one exit    {one * k:8.3f} s per 1,000 tokens")
    print(f"  each further exit     {per_exit * k:8.3f} s per 1,000 tokens")
    print(f"  all {L - 1} exits in total  {(gen + every) * k:8.3f} s per 1,000 tokens")


def bench_heads(model_dir: str, steps: int, batch: int, seq_len: int) -> None:
    spec = ModelSpec(preset=None, path=model_dir)
    texts = heads.read_corpus(["stdlib"])[:40]
    with tempfile.TemporaryDirectory() as out:
        first = heads.train(spec, texts, out, steps=1, batch=batch, seq_len=seq_len, progress=False)
        man = heads.train(
            spec, texts, out, steps=1 + steps, batch=batch, seq_len=seq_len, progress=False
        )
    dt = man.elapsed_s - first.elapsed_s  # training steps only (the resumed run's own time)
    tok = steps * batch * seq_len
    print(
        f"heads train on {spec.name}: exits {list(man.exits)}, {steps} steps of {batch} × "
        f"{seq_len}: {tok / dt:,.0f} training tokens/s ({dt / steps:.2f} s per step)"
    )


def bench_snapshots(repeats: int) -> None:
    m = zoo.tiny_model("qwen3_next")
    from ppsd_real.layers import LayerDriver, ModelParts

    d = LayerDriver(ModelParts.of(m))
    cache = d.new_cache()
    i = cache.kinds.index("linear")
    x = d.run_layers(d.embed(list(range(1, 33))), 0, i, cache, 0)
    step = x[:, -1:]
    pos = [32]

    def with_snapshot() -> None:
        d.run_layers(step, i, i + 1, cache, pos[0])
        pos[0] += 1

    t_step = _median(with_snapshot, repeats)
    t_snap = _median(lambda: _snapshot(cache.layers[i]), repeats)
    print(
        f"snapshots, tiny qwen3_next linear layer: step {t_step * 1e6:.0f} µs incl. the "
        f"snapshot, the snapshot alone {t_snap * 1e6:.0f} µs"
    )
    for dtype in (torch.float32, torch.bfloat16):
        rec = torch.randn(1, 32, 128, 128).to(dtype)
        conv = torch.randn(1, 8192, 4).to(dtype)
        t = _median(lambda rec=rec, conv=conv: (rec.clone(), conv.clone()), repeats)
        mb = (rec.numel() + conv.numel()) * rec.element_size() / 1e6
        print(f"  Qwen3-Next-80B-sized state ({mb:.1f} MB, {dtype}): clone {t * 1e6:.0f} µs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=str(SHIPPED))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--heads-steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--skip-heads", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    bench_accept(args.model_dir, args.prompts, args.prompt_tokens, args.tokens)
    if not args.skip_heads:
        bench_heads(args.model_dir, args.heads_steps, args.batch, args.seq_len)
    bench_snapshots(200)
    print(
        f"threads {args.threads}; load average before {load0[0]:.2f}, after "
        f"{os.getloadavg()[0]:.2f} (figures need a quiet machine)"
    )


if __name__ == "__main__":
    main()
