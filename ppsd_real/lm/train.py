"""Train the project's small Llama on the stdlib corpus (reproducible: fixed seed and steps).

    python -m ppsd_real.lm.train --out ppsd_real/models/stdlib-lm --steps 1800

Writes config + bf16 safetensors weights (small enough to ship), the tokenizer, and
``train_log.jsonl`` (loss, held-out loss, tokens/s every few steps). The base model is trained
alone; early-exit heads are trained afterwards on the frozen model (``ppsd_real.lm.heads``), so
AR output never depends on them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ppsd_real.lm.corpus import load_corpus
from ppsd_real.lm.tokenizer import save_for_transformers, train_tokenizer
from ppsd_real.threads import torch_threads

SEQ_LEN = 256


def model_config(vocab_size: int, eos_id: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=640,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )


def encode_stream(tok, texts: list[str], eos_id: int) -> torch.Tensor:
    """All texts as one token stream, each followed by end-of-text."""
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.long)


def windows(stream: torch.Tensor, starts: np.ndarray) -> torch.Tensor:
    idx = torch.as_tensor(starts)[:, None] + torch.arange(SEQ_LEN + 1)[None, :]
    return stream[idx]


@torch.no_grad()
def held_out_loss(model, stream: torch.Tensor, max_windows: int = 64) -> float:
    """Mean next-token cross-entropy over non-overlapping held-out windows (nats)."""
    model.eval()
    n = min(max_windows, (len(stream) - 1) // SEQ_LEN)
    batch = windows(stream, np.arange(n) * SEQ_LEN)
    losses = []
    for chunk in batch.split(16):
        out = model(input_ids=chunk[:, :-1], labels=chunk[:, :-1].clone())
        logits = out.logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1)
        )
        losses.append(loss.item())
    model.train()
    return float(np.mean(losses))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("ppsd_real/models/stdlib-lm"))
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=300)
    args = ap.parse_args(argv)
    with torch_threads(args.threads):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    from transformers import LlamaForCausalLM

    corpus = load_corpus()
    tok = train_tokenizer(corpus.read("train"))
    eos = tok.token_to_id("<|endoftext|>")
    train_stream = encode_stream(tok, corpus.read("train"), eos)
    held_stream = encode_stream(tok, corpus.read("held_out"), eos)
    model = LlamaForCausalLM(model_config(tok.get_vocab_size(), eos))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
        ),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "train_log.jsonl"
    log = log_path.open("w", encoding="utf-8")
    meta = {
        "event": "start",
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": SEQ_LEN,
        "lr": args.lr,
        "threads": args.threads,
        "train_tokens": len(train_stream),
        "held_out_tokens": len(held_stream),
        "train_files": len(corpus.train),
        "held_out_files": len(corpus.held_out),
        "torch": torch.__version__,
    }
    log.write(json.dumps(meta) + "\n")
    t0, seen = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        batch = windows(
            train_stream, rng.integers(0, len(train_stream) - SEQ_LEN - 1, size=args.batch)
        )
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        seen += batch.numel() - args.batch
        if step % 25 == 0 or step == args.steps:
            rec = {
                "step": step,
                "loss": round(loss.item(), 4),
                "lr": sched.get_last_lr()[0],
                "tokens": seen,
                "elapsed_s": round(time.perf_counter() - t0, 1),
                "tokens_per_s": round(seen / (time.perf_counter() - t0), 1),
            }
            if step % args.eval_every == 0 or step == args.steps:
                rec["held_out_loss"] = round(held_out_loss(model, held_stream), 4)
            log.write(json.dumps(rec) + "\n")
            log.flush()
    model.eval()
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    save_for_transformers(tok, args.out)
    log.write(json.dumps({"event": "done", "elapsed_s": round(time.perf_counter() - t0, 1)}) + "\n")
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
