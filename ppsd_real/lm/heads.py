"""Early-exit heads trained by self-distillation on the frozen base model.

    python -m ppsd_real.lm.heads --model ppsd_real/models/stdlib-lm --steps 300

For every exit layer E in 1..L-1 a head W_E (vocab × hidden) maps the model's final norm of
layer E's output to logits; it starts from the shared LM head (the LayerSkip-style baseline)
and learns to match the full model's own next-token distribution (KL(p_full ‖ p_E)) on the
training text. The base model is frozen, so AR output — and hence what a lossless decoder
must reproduce — never changes; heads can be retrained or dropped freely. Written as
``ee_head_exit{E}.safetensors`` (bf16, key ``weight``) beside the model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ppsd_real.lm.corpus import load_corpus
from ppsd_real.lm.train import SEQ_LEN, encode_stream, windows
from ppsd_real.threads import torch_threads


def head_file(model_dir: Path, exit_layer: int) -> Path:
    return Path(model_dir) / f"ee_head_exit{exit_layer}.safetensors"


def exit_hidden(model, input_ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Final-normed hidden state after each layer 1..L-1, and the full model's logits."""
    out = model(input_ids=input_ids, output_hidden_states=True)
    norm = model.model.norm
    states = [norm(h) for h in out.hidden_states[1:-1]]  # after layers 1..L-1
    return states, out.logits


def train_heads(
    model_dir: Path,
    steps: int = 300,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 2,
) -> dict:
    with torch_threads(threads):
        return _train_heads(model_dir, steps, batch, lr, seed)


def _train_heads(model_dir: Path, steps: int, batch: int, lr: float, seed: int) -> dict:
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True
    ).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    stream = encode_stream(tok, load_corpus().read("train"), eos)
    n_exits = model.config.num_hidden_layers - 1
    base = model.lm_head.weight.detach()
    heads = [torch.nn.Parameter(base.clone()) for _ in range(n_exits)]
    opt = torch.optim.AdamW(heads, lr=lr, weight_decay=0.0)
    log = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        ids = windows(stream, rng.integers(0, len(stream) - SEQ_LEN - 1, size=batch))[:, :-1]
        with torch.no_grad():
            states, logits = exit_hidden(model, ids)
            teacher = torch.log_softmax(logits.float(), -1)
        loss = torch.zeros(())
        for w, h in zip(heads, states, strict=True):
            student = torch.log_softmax(h @ w.T, -1)
            loss = (
                loss
                + torch.nn.functional.kl_div(
                    student, teacher, log_target=True, reduction="batchmean"
                )
                / ids.shape[1]
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps:
            log.append(
                {
                    "step": step,
                    "kl_sum": round(loss.item(), 4),
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
    for e, w in enumerate(heads, start=1):
        save_file(
            {"weight": w.detach().to(torch.bfloat16).contiguous()}, str(head_file(model_dir, e))
        )
    return {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "log": log}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=Path("ppsd_real/models/stdlib-lm"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    info = train_heads(args.model, args.steps, args.batch, seed=args.seed, threads=args.threads)
    (args.model / "heads_log.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
