"""Early-exit heads trained by self-distillation on a frozen base model (any supported one).

    ppsd heads train --model-dir DIR --corpus FILE... --out HEADS_DIR [--exits 2,4]
    python -m ppsd_real.lm.heads            # the project's example: stdlib-lm on the stdlib

For every exit layer E a head W_E (vocab × hidden, plus a bias where the LM head has one) maps
the final norm of layer E's output — what the runner's early exit feeds a head — to logits. It
starts from the shared LM head (the LayerSkip-style baseline) and learns to match the full
model's own next-token distribution (KL(p_full ‖ p_E), mean per token) on the training text.
The base model is frozen, so its output — what a lossless decoder must reproduce — never
changes; heads can be retrained or dropped freely.

A heads folder holds ``ee_head_exit{E}.safetensors`` (bf16, keys ``weight`` [+ ``bias``]) and
``heads.json`` (``HeadsManifest``: the base model's fingerprint, exits, corpus, steps, loss).
Training writes ``checkpoint.pt`` (heads, optimiser, data-order state) every few steps and
resumes from it when run again with the same settings; an interrupted run loses at most the
steps since the last checkpoint, and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppsd_real.lm.corpus import load_corpus
from ppsd_real.lm.train import SEQ_LEN
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.io import atomic_write_bytes, load_document, write_all
from ppsd_sim.records.schema import open_record, tag

MANIFEST = "heads.json"
CHECKPOINT = "checkpoint.pt"
RECORD = "HeadsManifest"
STATUSES = ("training", "done")
#: settings a resumed run must share with the interrupted one
_RESUME_KEYS = ("exits", "batch", "seq_len", "lr", "seed")


def head_file(model_dir: Path, exit_layer: int) -> Path:
    return Path(model_dir) / f"ee_head_exit{exit_layer}.safetensors"


def exit_hidden(model, input_ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Final-normed hidden state after each layer 1..L-1, and the full model's logits (the
    Llama-family view ``ppsd_real.lm.card`` uses for the project's own model)."""
    out = model(input_ids=input_ids, output_hidden_states=True)
    norm = model.model.norm
    states = [norm(h) for h in out.hidden_states[1:-1]]  # after layers 1..L-1
    return states, out.logits


@dataclass(frozen=True)
class HeadsManifest:
    """What a heads folder holds and how it was made. ``base_model`` names the model the heads
    belong to (name, fingerprint, model_type, n_layers, hidden, vocab); heads are refused for
    any model with another fingerprint. ``loss`` logs the mean KL per exit and token."""

    base_model: dict[str, Any]
    exits: tuple[int, ...]
    corpus: dict[str, Any]
    steps: int
    steps_done: int
    batch: int
    seq_len: int
    lr: float
    seed: int
    status: str = "training"
    loss: tuple[dict[str, Any], ...] = ()
    elapsed_s: float = 0.0
    notes: str = ""

    def __post_init__(self) -> None:
        validate.mapping(
            "base_model",
            self.base_model,
            ("name", "fingerprint", "model_type", "n_layers", "hidden", "vocab"),
            ("fingerprint", "n_layers"),
        )
        n = validate.integer("base_model.n_layers", self.base_model["n_layers"], lo=2)
        ex = [
            validate.integer(f"exits[{i}]", e, lo=1, hi=n - 1)
            for i, e in enumerate(validate.sequence("exits", self.exits, min_len=1))
        ]
        if sorted(set(ex)) != ex:
            raise ConfigError("exits", f"must be strictly increasing, got {ex}")
        object.__setattr__(self, "exits", tuple(ex))
        validate.integer("steps", self.steps, lo=1)
        validate.integer("steps_done", self.steps_done, lo=0, hi=self.steps)
        validate.integer("batch", self.batch, lo=1)
        validate.integer("seq_len", self.seq_len, lo=2)
        validate.number("lr", self.lr, lo=0.0, lo_open=True)
        validate.integer("seed", self.seed)
        validate.choice("status", self.status, STATUSES)
        object.__setattr__(self, "loss", tuple(self.loss))

    def to_dict(self) -> dict[str, Any]:
        return {
            **tag(RECORD),
            "base_model": dict(self.base_model),
            "exits": list(self.exits),
            "corpus": dict(self.corpus),
            "steps": self.steps,
            "steps_done": self.steps_done,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "lr": self.lr,
            "seed": self.seed,
            "status": self.status,
            "loss": [dict(x) for x in self.loss],
            "elapsed_s": self.elapsed_s,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> HeadsManifest:
        d = open_record(
            data,
            RECORD,
            where,
            (
                "base_model",
                "exits",
                "corpus",
                "steps",
                "steps_done",
                "batch",
                "seq_len",
                "lr",
                "seed",
                "status",
                "loss",
                "elapsed_s",
                "notes",
            ),
            ("base_model", "exits", "corpus", "steps", "steps_done", "batch", "seq_len", "lr"),
        )
        d["exits"] = tuple(d["exits"])
        d["loss"] = tuple(d.get("loss", ()))
        return cls(**d)

    @classmethod
    def read(cls, folder: str | Path, field_name: str = "--heads") -> HeadsManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise ConfigError(field_name, f"{folder} is not a heads folder (no {MANIFEST})")
        try:
            return cls.from_dict(load_document(path, field_name))
        except ConfigError as err:
            if err.field.startswith(field_name):
                raise
            raise ConfigError(field_name, f"{path}: {err}") from None

    def check_base(self, fingerprint: str, field_name: str = "--heads") -> None:
        """Refuse heads trained for another model (another fingerprint)."""
        mine = self.base_model["fingerprint"]
        if mine != fingerprint:
            name = self.base_model.get("name") or "another model"
            raise ConfigError(
                field_name,
                f"these heads were trained for {name} ({mine[:19]}…), not this model "
                f"({fingerprint[:19]}…)",
            )


# ---- corpus ---------------------------------------------------------------------------------
def read_corpus(paths: list[str], field_name: str = "--corpus") -> list[str]:
    """Texts of the corpus files: plain text (one document per file) or JSON Lines with a
    ``text`` or ``prompt`` string per line; ``stdlib`` names the project's example corpus
    (the standard library's training split). Empty or non-UTF-8 files are refused."""
    if paths == ["stdlib"]:
        return load_corpus().read("train")
    texts: list[str] = []
    for p in map(Path, paths):
        try:
            raw = p.read_bytes()
        except OSError as err:
            raise ConfigError(field_name, f"cannot read {p}: {err.strerror or err}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(field_name, f"{p} is not UTF-8 text (byte {err.start})") from None
        if not text.strip():
            raise ConfigError(field_name, f"{p} is empty")
        if p.suffix.lower() != ".jsonl":
            texts.append(text)
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{field_name} {p.name}:{n}", f"not JSON ({err.msg})") from None
            value = obj.get("text", obj.get("prompt")) if isinstance(obj, dict) else None
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"{field_name} {p.name}:{n}", "needs a non-empty 'text' (or 'prompt') string"
                )
            texts.append(value)
    return texts


def token_stream(tok: Any, texts: list[str], field_name: str = "--corpus") -> torch.Tensor:
    """The corpus as one token stream, each document followed by end-of-text when the
    tokenizer has one."""
    eos = getattr(tok, "eos_token_id", None)
    ids: list[int] = []
    for text in texts:
        ids.extend(int(i) for i in tok(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(int(eos))
    if not ids:
        raise ConfigError(field_name, "tokenises to no tokens")
    return torch.tensor(ids, dtype=torch.long)


def stream_fingerprint(stream: torch.Tensor) -> str:
    return "sha256:" + hashlib.sha256(stream.to(torch.int64).numpy().tobytes()).hexdigest()


# ---- training -------------------------------------------------------------------------------
@dataclass
class _State:
    """Everything a resumed run needs: heads, optimiser, data order, log."""

    weights: list[torch.nn.Parameter]
    biases: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    step: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0


def _exit_features(model: Any, parts: Any, exits: tuple[int, ...], ids: torch.Tensor):
    """The final norm of each exit layer's output (what a head reads) and the full model's
    log-probabilities, from one forward of the frozen model."""
    got: dict[int, torch.Tensor] = {}
    handles = []
    for e in exits:

        def grab(module: Any, args: Any, out: Any, e: int = e) -> None:
            got[e] = out[0] if isinstance(out, tuple) else out

        handles.append(parts.layers[e - 1].register_forward_hook(grab))
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
            feats = {e: parts.norm(got[e]) for e in exits}
    finally:
        for h in handles:
            h.remove()
    return feats, torch.log_softmax(logits.float(), -1)


def _checkpoint_bytes(st: _State, manifest: HeadsManifest) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {
            "manifest": manifest.to_dict(),
            "weights": [w.detach() for w in st.weights],
            "biases": [b.detach() for b in st.biases],
            "opt": st.opt.state_dict(),
            "rng": st.rng.bit_generator.state,
            "step": st.step,
            "log": st.log,
            "elapsed_s": st.elapsed_s,
        },
        buf,
    )
    return buf.getvalue()


def _final_files(st: _State, manifest: HeadsManifest, out: Path) -> dict[Path, str | bytes]:
    from safetensors.torch import save as save_bytes

    files: dict[Path, str | bytes] = {}
    for i, e in enumerate(manifest.exits):
        tensors = {"weight": st.weights[i].detach().to(torch.bfloat16).contiguous()}
        if st.biases:
            tensors["bias"] = st.biases[i].detach().to(torch.bfloat16).contiguous()
        files[head_file(out, e)] = save_bytes(tensors)
    files[out / MANIFEST] = manifest.to_json()
    return files


def _resume(out: Path, manifest: HeadsManifest, st: _State) -> None:
    """Continue an interrupted (or shorter) run written to ``out`` with the same settings."""
    ck = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    old = HeadsManifest.from_dict(ck["manifest"])
    old.check_base(manifest.base_model["fingerprint"], "--out")
    if old.corpus.get("fingerprint") != manifest.corpus.get("fingerprint"):
        raise ConfigError("--corpus", f"differs from the corpus of the run in {out}")
    for key in _RESUME_KEYS:
        if getattr(old, key) != getattr(manifest, key):
            raise ConfigError(
                f"--{key.replace('_', '-')}",
                f"{getattr(manifest, key)!r} differs from {getattr(old, key)!r} of the run in "
                f"{out} (use another --out, or --restart)",
            )
    if ck["step"] > manifest.steps:
        raise ConfigError("--steps", f"{out} already holds {ck['step']} steps")
    with torch.no_grad():
        for w, v in zip(st.weights, ck["weights"], strict=True):
            w.copy_(v)
        for b, v in zip(st.biases, ck["biases"], strict=True):
            b.copy_(v)
    st.opt.load_state_dict(ck["opt"])
    st.rng.bit_generator.state = ck["rng"]
    st.step, st.log, st.elapsed_s = int(ck["step"]), list(ck["log"]), float(ck["elapsed_s"])


def train(
    spec: Any,
    texts: list[str],
    out: str | Path,
    *,
    exits: tuple[int, ...] | None = None,
    steps: int = 300,
    batch: int = 8,
    seq_len: int = SEQ_LEN,
    lr: float = 1e-3,
    seed: int = 0,
    corpus_name: str = "",
    restart: bool = False,
    checkpoint_every: int = 25,
    progress: bool = True,
    stop_after: int | None = None,
) -> HeadsManifest:
    """Train heads at ``exits`` (default all) of the model ``spec`` (a ``ModelSpec``) on
    ``texts`` and write them to ``out``; resumes a run found there. ``stop_after`` ends the
    process's work after that many steps as an interruption would (tests, benchmarks)."""
    from ppsd_real.layers import ModelParts
    from ppsd_real.model_loading import load_model, model_fingerprint
    from ppsd_real.prompts import load_tokenizer

    out = Path(out)
    tok = load_tokenizer(spec.path, "--model-dir")
    stream = token_stream(tok, texts)
    if len(stream) < seq_len + 2:
        raise ConfigError(
            "--corpus", f"holds {len(stream)} tokens; needs more than --seq-len {seq_len} + 1"
        )
    model = load_model(spec)
    for p in model.parameters():
        p.requires_grad_(False)
    parts = ModelParts.of(model)
    n_layers = len(parts.layers)
    exits = tuple(range(1, n_layers)) if not exits else tuple(sorted(set(exits)))
    for e in exits:
        if not 1 <= e < n_layers:
            raise ConfigError("--exits", f"must satisfy 1 <= E < L = {n_layers}, got {e}")
    lm = parts.lm_head
    manifest = HeadsManifest(
        base_model={
            "name": spec.name,
            "fingerprint": model_fingerprint(spec),
            "model_type": parts.model_type,
            "n_layers": n_layers,
            "hidden": int(lm.weight.shape[1]),
            "vocab": int(lm.weight.shape[0]),
        },
        exits=exits,
        corpus={
            "name": corpus_name,
            "documents": len(texts),
            "tokens": len(stream),
            "fingerprint": stream_fingerprint(stream),
        },
        steps=steps,
        steps_done=0,
        batch=batch,
        seq_len=seq_len,
        lr=lr,
        seed=seed,
    )
    bias = getattr(lm, "bias", None)
    weights = [torch.nn.Parameter(lm.weight.detach().float().clone()) for _ in exits]
    biases = (
        [torch.nn.Parameter(bias.detach().float().clone()) for _ in exits]
        if bias is not None
        else []
    )
    st = _State(
        weights,
        biases,
        torch.optim.AdamW([*weights, *biases], lr=lr, weight_decay=0.0),
        np.random.default_rng(seed),
    )
    if (out / CHECKPOINT).is_file() and not restart:
        _resume(out, manifest, st)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    bar = tqdm(
        total=steps, initial=st.step, desc="ppsd heads train", disable=not progress, leave=False
    )
    t0 = time.perf_counter() - st.elapsed_s
    ran = 0
    try:
        while st.step < steps and (stop_after is None or ran < stop_after):
            starts = st.rng.integers(0, len(stream) - seq_len - 1, size=batch)
            idx = torch.as_tensor(starts)[:, None] + torch.arange(seq_len)[None, :]
            ids = stream[idx].to(lm.weight.device)
            feats, teacher = _exit_features(model, parts, exits, ids)
            loss = torch.zeros((), device=lm.weight.device)
            for i, e in enumerate(exits):
                logits = feats[e].float() @ st.weights[i].T
                if st.biases:
                    logits = logits + st.biases[i]
                student = torch.log_softmax(logits, -1)
                kl = torch.nn.functional.kl_div(
                    student, teacher, log_target=True, reduction="batchmean"
                )
                loss = loss + kl / seq_len
            st.opt.zero_grad(set_to_none=True)
            loss.backward()
            st.opt.step()
            st.step += 1
            ran += 1
            mean_kl = loss.item() / len(exits)
            bar.update(1)
            bar.set_postfix(kl=f"{mean_kl:.4f}")
            if st.step % checkpoint_every == 0 or st.step == steps:
                st.elapsed_s = time.perf_counter() - t0
                st.log.append(
                    {
                        "step": st.step,
                        "kl_mean": round(mean_kl, 5),
                        "elapsed_s": round(st.elapsed_s, 2),
                    }
                )
                atomic_write_bytes(out / CHECKPOINT, _checkpoint_bytes(st, manifest))
    finally:
        bar.close()
    st.elapsed_s = time.perf_counter() - t0
    done = HeadsManifest(
        **{
            **manifest.__dict__,
            "steps_done": st.step,
            "status": "done" if st.step >= steps else "training",
            "loss": tuple(st.log),
            "elapsed_s": round(st.elapsed_s, 2),
        }
    )
    if st.step % checkpoint_every:
        atomic_write_bytes(out / CHECKPOINT, _checkpoint_bytes(st, done))
    write_all(_final_files(st, done, out))
    return done


def load_heads(
    folder: str | Path, fingerprint: str, lm_head: torch.nn.Module, field_name: str = "--heads"
) -> dict[int, torch.nn.Module]:
    """The trained heads of a folder as modules on the LM head's device and dtype, after
    checking they belong to this model (fingerprint); each is read as ``--heads`` would read
    one file (``drafters.load_ee_head``)."""
    from ppsd_real.drafters import DrafterSpec, heads_dir_head, load_ee_head

    man = HeadsManifest.read(folder, field_name)
    out: dict[int, torch.nn.Module] = {}
    for e in man.exits:
        path = heads_dir_head(str(folder), e, fingerprint, field_name)
        try:
            out[e] = load_ee_head(DrafterSpec(head_path=path), lm_head)
        except ConfigError as err:
            raise ConfigError(field_name, f"{Path(path).name}: {err.message}") from None
    return out


# ---- the project's example ------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Train the shipped stdlib-lm's heads on the stdlib corpus, into its own folder (the
    project's model; ``heads_log.json`` is what its model card reads)."""
    from ppsd_real.model_loading import ModelSpec

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=Path("ppsd_real/models/stdlib-lm"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = ModelSpec(preset=None, path=str(args.model))
    man = train(
        spec,
        read_corpus(["stdlib"]),
        args.model,
        steps=args.steps,
        batch=args.batch,
        seed=args.seed,
        corpus_name="stdlib (train split)",
        restart=True,
    )
    info = {
        "steps": man.steps,
        "batch": man.batch,
        "lr": man.lr,
        "seed": man.seed,
        "log": [
            {
                "step": r["step"],
                "kl_sum": round(r["kl_mean"] * len(man.exits), 4),
                "elapsed_s": r["elapsed_s"],
            }
            for r in man.loss
        ],
    }
    (args.model / "heads_log.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    (args.model / CHECKPOINT).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
