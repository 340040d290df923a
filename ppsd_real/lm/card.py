"""Measure what the model card reports, on held-out text.

    python -m ppsd_real.lm.card --model ppsd_real/models/stdlib-lm

- held-out loss / perplexity of the full model (the weights as shipped, bf16 → fp32);
- per exit layer E, with the shared LM head and with the trained head: the agreement of the
  exit's greedy token with the full model's, (a) teacher-forced on the held-out text and
  (b) along the model's own greedy continuations of held-out prompts — the acceptance a
  greedy drafter really meets, since every draft is made from a prefix equal to AR output.
  (b) is ``ppsd accept``'s measurement (``ppsd_real.accept.measure``) on prompts pinned in
  the model folder (``eval_prompts.json``: the stdlib's text differs between Python patch
  releases, so windows of it would shift from one interpreter to the next);
- from (b), with the simulator's own definitions (``ppsd_sim.records.acceptance_math``), each
  stating the 0/1 sequence ("chain") it is measured over:
  * over OUTPUT POSITIONS (one outcome per generated token: does the exit's token equal the
    full model's, given the AR prefix). PPSD judges a draft at every position, so these are
    also PPSD's judged drafts: α and ρ here are ``ppsd sim --alpha A --burstiness R
    --burstiness-over positions`` (the simulator's position chain, exact for EESD too);
  * EESD rounds of γ = 4 met along those positions: τ = mean accepted drafts per round (bonus
    excluded; after 4 accepts the bonus token takes the next position, which is not drafted);
  * over EESD's JUDGED DRAFTS at γ = 4 (the bonus positions left out): α and ρ of that
    sequence, i.e. ``--alpha A --burstiness R --burstiness-over judged`` for EESD(γ = 4).
  Correlations are taken inside each continuation, never across two of them.
Writes ``card.json``; ``model_card.md`` is written from it (``render_card``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ppsd_real.lm import card_eval, card_sampling
from ppsd_real.lm.corpus import HELD_OUT, load_corpus
from ppsd_real.lm.heads import exit_hidden, head_file
from ppsd_real.lm.train import SEQ_LEN, encode_stream, windows
from ppsd_real.threads import torch_threads
from ppsd_sim.records.acceptance_math import (
    judged_outcomes,
    pooled_lag1_correlation,
    rounds_from_positions,
)


def load(model_dir: Path):
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True
    ).eval()
    return model, Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))


def trained_heads(model_dir: Path, n_exits: int) -> dict[int, torch.Tensor]:
    out = {}
    for e in range(1, n_exits + 1):
        f = head_file(model_dir, e)
        if f.is_file():
            out[e] = load_file(str(f))["weight"].float()
    return out


@torch.no_grad()
def agreement(model, ids: torch.Tensor, heads: dict[int, torch.Tensor]) -> dict[str, np.ndarray]:
    """0/1 arrays (batch × positions) per exit: does the exit's argmax equal the full model's?"""
    states, logits = exit_hidden(model, ids)
    full = logits.argmax(-1)
    out = {}
    for e, h in enumerate(states, start=1):
        out[f"shared/{e}"] = (model.lm_head(h).argmax(-1) == full).numpy()
        if e in heads:
            out[f"trained/{e}"] = ((h @ heads[e].T).argmax(-1) == full).numpy()
    return out


#: the EESD round length the card's τ and judged-draft figures are for
CARD_GAMMA = 4
#: what every acceptance figure of card.json means (written into it)
DEFINITIONS = {
    "alpha_greedy": "accepted / output positions along greedy continuations (chain: output "
    "positions = PPSD's judged drafts)",
    "burstiness_lag1": "lag-1 correlation of that 0/1 sequence inside each continuation "
    "(chain: output positions; ppsd sim --burstiness-over positions)",
    "tau_gamma4": "mean accepted drafts per EESD round of 4 along the positions, bonus "
    "excluded (the bonus token's position is not drafted)",
    "eesd_gamma4_judged": "alpha and burstiness of EESD's judged drafts at gamma = 4 (chain: "
    "judged drafts, bonus positions left out; ppsd sim --burstiness-over judged)",
}


@dataclass(frozen=True)
class PositionStatistics:
    """The card's acceptance figures of 0/1 sequences over output positions (see
    ``DEFINITIONS``); None where a sequence gives no estimate (too short, or constant)."""

    alpha: float | None  # over output positions
    burstiness: float | None  # over output positions
    tau: float | None  # EESD rounds of γ along the positions, bonus excluded
    judged_alpha: float | None  # EESD's judged drafts at γ
    judged_burstiness: float | None

    def card_fields(self) -> dict[str, Any]:
        return {
            "alpha_greedy": _round(self.alpha, 4),
            "tau_gamma4": _round(self.tau, 3),
            "burstiness_lag1": _round(self.burstiness, 3),
            "eesd_gamma4_judged": {
                "alpha": _round(self.judged_alpha, 4),
                "burstiness": _round(self.judged_burstiness, 3),
            },
        }


def position_statistics(sequences: list[np.ndarray], gamma: int = CARD_GAMMA) -> PositionStatistics:
    """α and ρ over output positions (one sequence per continuation), τ of the EESD rounds of
    γ a greedy drafter meets along them, and α and ρ of those rounds' judged drafts."""
    seqs = [np.asarray(x, dtype=np.int64).ravel() for x in sequences]
    rounds = [rounds_from_positions(x, gamma) for x in seqs]
    judged = [judged_outcomes(r, gamma) for r in rounds]
    return PositionStatistics(
        alpha=_mean(seqs),
        burstiness=pooled_lag1_correlation(seqs),
        tau=_mean(rounds),
        judged_alpha=_mean(judged),
        judged_burstiness=pooled_lag1_correlation(judged),
    )


def _mean(parts: list[np.ndarray]) -> float | None:
    x = np.concatenate(parts) if parts else np.zeros(0)
    return float(x.mean()) if x.size else None


@torch.no_grad()
def held_out_windows(tok, max_windows: int = 200) -> torch.Tensor:
    """The first ``max_windows`` non-overlapping windows of the held-out token stream."""
    held = encode_stream(tok, load_corpus().read("held_out"), tok.token_to_id("<|endoftext|>"))
    n_win = min(max_windows, (len(held) - 1) // SEQ_LEN)
    return windows(held, np.arange(n_win) * SEQ_LEN)


@torch.no_grad()
def score_held_out(model, batch: torch.Tensor, heads: dict[int, torch.Tensor]):
    """Mean next-token loss (nats) over ``batch``, and per-exit agreement arrays."""
    total = 0.0
    forced: dict[str, list[np.ndarray]] = {}
    for chunk in batch.split(16):
        logits = model(input_ids=chunk[:, :-1]).logits.float()
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"
        ).item()
        for k, v in agreement(model, chunk[:, :-1], heads).items():
            forced.setdefault(k, []).append(v)
    return total / (batch.shape[0] * SEQ_LEN), forced


@torch.no_grad()
def measure(
    model_dir: Path,
    prompts: int = 16,
    prompt_len: int = 64,
    new_tokens: int = 128,
    max_windows: int = 200,
    threads: int = 2,
) -> dict:
    """card.json's measured sections but the sampled one (``card_sampling.add_to``): the
    teacher-forced loss and agreement on held-out windows, and the greedy acceptance table,
    measured by ``ppsd accept``'s code on the pinned held-out prompts (``card_eval``; pinned
    here from the running stdlib when the folder has none of this shape yet)."""
    plist = card_eval.pinned_or_new(model_dir, prompts, prompt_len)
    with torch_threads(threads):
        model, tok = load(model_dir)
        batch = held_out_windows(tok, max_windows)
        heads = trained_heads(model_dir, model.config.num_hidden_layers - 1)
        loss, forced = score_held_out(model, batch, heads)
        rec = card_eval.acceptance_record(model_dir, plist, new_tokens)
    exits: list[dict] = []
    for e in range(1, model.config.num_hidden_layers):
        row: dict = {"exit": e}
        for kind in ("shared", "trained"):
            key = f"{kind}/{e}"
            if key not in forced:
                continue
            teacher = round(float(np.concatenate(forced[key], axis=None).mean()), 4)
            row[kind] = {
                "alpha_held_out": teacher,
                **position_statistics(
                    [np.asarray(t) for t in rec.of(e, kind).traces]
                ).card_fields(),
            }
        exits.append(row)
    return {
        "definitions": DEFINITIONS,
        "held_out_loss_nats": round(loss, 4),
        "held_out_perplexity": round(math.exp(loss), 2),
        "held_out_tokens_scored": batch.shape[0] * SEQ_LEN,
        "held_out_files": list(HELD_OUT),
        "greedy_eval": {
            "prompts": prompts,
            "prompt_len": prompt_len,
            "new_tokens": new_tokens,
            "prompt_file": card_eval.FILE,
        },
        "exits": exits,
    }


def _round(x: float | None, nd: int) -> float | None:
    return None if x is None else round(x, nd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=Path("ppsd_real/models/stdlib-lm"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    card = measure(args.model, threads=args.threads)
    card_sampling.add_to(card, args.model, args.threads)
    (args.model / "card.json").write_text(
        json.dumps(card, indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    (args.model / "model_card.md").write_text(render_card(args.model), encoding="utf-8")
    print(json.dumps({k: v for k, v in card.items() if k != "held_out_files"}, indent=1))
    return 0


def render_card(model_dir: Path) -> str:
    """model_card.md from card.json, train_log.jsonl and heads_log.json (no hand-typed numbers)."""
    model_dir = Path(model_dir)
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    log = [
        json.loads(x)
        for x in (model_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    start = log[0]
    steps = [r for r in log if "step" in r]
    last = steps[-1]
    evals = [r for r in steps if "held_out_loss" in r]
    heads = json.loads((model_dir / "heads_log.json").read_text(encoding="utf-8"))
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    g = card["greedy_eval"]
    lines = [
        "# stdlib-lm: the project's own small language model",
        "",
        "A Llama-architecture causal LM trained from scratch by `python -m ppsd_real.lm.train` on the Python",
        "standard library's own source, read from the running interpreter (nothing copied into this",
        "repository), with early-exit heads trained by self-distillation (`python -m ppsd_real.lm.heads`).",
        "It exists so that acceptance rates, their dependence on the exit layer and the clustering of",
        "rejections are real, measured on real text. Numbers below: `python -m ppsd_real.lm.card`.",
        "",
        "## Data",
        f"- Corpus: the stdlib's `.py` files without test suites, GUI and vendored code "
        f"({start['train_files']} training files, {start['train_tokens']:,} tokens).",
        f"- Held out: a pinned list of {start['held_out_files']} modules (`ppsd_real/lm/corpus.py`, "
        f"{start['held_out_tokens']:,} tokens), e.g. textwrap.py, json/decoder.py, statistics.py.",
        "- Tokenizer: byte-level BPE, 2,048 symbols, trained on the training part (byte-level: any text",
        "  encodes without unknown tokens; small: the LM head and embedding stay cheap to ship).",
        "",
        "## Model and training",
        f"- Llama: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, {cfg['num_attention_heads']} heads, "
        f"MLP {cfg['intermediate_size']}, vocabulary {cfg['vocab_size']}, tied embeddings; weights stored in bf16 "
        "(loaded as float32 for CPU runs).",
        f"- {last['step']} steps of {start['batch']} × {start['seq_len']} tokens ({last['tokens']:,} tokens), AdamW, "
        f"peak lr {start['lr']}, seed {start['seed']}, {start['threads']} threads, torch {start['torch']}: "
        f"{last['elapsed_s']:.0f} s at {last['tokens_per_s']:.0f} tokens/s on a 2-core CPU.",
        "- Held-out loss during training: "
        + ", ".join(f"step {r['step']}: {r['held_out_loss']:.3f}" for r in evals)
        + " (nats/token).",
        f"- Early-exit heads: one per exit layer 1..{cfg['num_hidden_layers'] - 1}, a (vocab × hidden) matrix "
        "after the final norm, initialised from the shared LM head and trained to minimise "
        "KL(full model ‖ head) on the frozen model "
        f"({heads['steps']} steps of {heads['batch']} × {start['seq_len']} tokens). The base model is "
        "frozen, so its output (what lossless decoding reproduces) does not depend on the heads.",
        "",
        "## Held-out quality",
        f"- Loss {card['held_out_loss_nats']:.4f} nats/token, perplexity {card['held_out_perplexity']:.2f} "
        f"({card['held_out_tokens_scored']:,} tokens scored, the weights as shipped).",
        "",
        "## Acceptance by exit layer (greedy)",
        "",
        "α is the agreement of the exit's greedy token with the full model's: teacher-forced on held-out",
        f"text, and along the model's own greedy continuations of {g['prompts']} held-out prompts "
        f"({g['prompt_len']} + {g['new_tokens']} tokens) — the acceptance a greedy drafter meets.",
        "Each figure says which 0/1 sequence (chain) it is measured over:",
        "",
        "- **positions**: one outcome per generated token. PPSD judges a draft at every position, so",
        "  these are PPSD's judged drafts too. ρ is the lag-1 correlation inside each continuation",
        "  (0 = independent; > 0 = rejections cluster; < 0 = they alternate).",
        "- **τ (γ=4)**: mean accepted drafts per EESD round of 4 met along the positions, bonus",
        "  excluded (after 4 accepts the bonus token takes the next position, which is not drafted).",
        "- **judged (EESD γ=4)**: α and ρ of the drafts EESD at γ = 4 judges (bonus positions left out).",
        "",
        "The simulator takes them as they are: `ppsd sim --alpha <α positions> --burstiness <ρ positions>",
        "--burstiness-over positions` (any scheme, any γ), or for EESD at γ = 4 alone",
        "`--alpha <α judged> --burstiness <ρ judged> --burstiness-over judged`.",
        "",
        "| exit E | head | α held-out | α positions | ρ positions | τ (γ=4) | α judged (γ=4) | ρ judged (γ=4) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in card["exits"]:
        for kind in ("shared", "trained"):
            if kind in row:
                r = row[kind]
                j = r.get("eesd_gamma4_judged", {})
                lines.append(
                    f"| {row['exit']} | {kind} | {r['alpha_held_out']:.3f} | {_fmt(r['alpha_greedy'])} "
                    f"| {_fmt(r['burstiness_lag1'])} | {_fmt(r['tau_gamma4'], 2)} "
                    f"| {_fmt(j.get('alpha'))} | {_fmt(j.get('burstiness'))} |"
                )
    lines += card_sampling.render(card)
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


if __name__ == "__main__":
    raise SystemExit(main())
