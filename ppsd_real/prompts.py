"""The user's prompts: ``--prompt TEXT`` or ``--prompt-file FILE``, tokenised by the model's own
tokenizer.

A prompt file is plain text (the whole file is one prompt) or JSON Lines (``.jsonl``: one
object per line with a ``prompt`` string or a chat ``messages`` list of ``{role, content}``).
Chat messages go through the tokenizer's chat template (with the generation prompt), which a
tokenizer without one cannot do: refused, naming the line. ``chat="on"`` also wraps plain
prompts as one user message; ``"off"`` never applies a template. Every refusal is one line
naming the flag (and line) as the user typed it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppsd_sim.errors import ConfigError

CHAT_MODES = ("auto", "on", "off")
#: the default prompt's text for a model with a tokenizer: a held-out module of the corpus
#: (``ppsd_real.lm.corpus.HELD_OUT``), text the project's model did not train on
DEFAULT_PROMPT_MODULE = "textwrap.py"


@dataclass(frozen=True)
class Prompt:
    """One prompt: its token ids, the text or messages it came from, and where it was read."""

    ids: tuple[int, ...]
    source: str  # "--prompt", "prompts.jsonl:3", ...
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None


def load_tokenizer(model_dir: str | Path | None, field: str = "--prompt") -> Any:
    """The model folder's tokenizer (transformers AutoTokenizer), or ConfigError naming the
    flag that needed it."""
    if model_dir is None:
        raise ConfigError(field, "needs a model with a tokenizer (--model-dir), not a preset")
    folder = Path(model_dir)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ConfigError(field, f"needs a tokenizer, and {folder} has none (tokenizer.json)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ConfigError(field, f"cannot load the tokenizer of {folder}: {first}") from None


def _messages(where: str, value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(where, "'messages' must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise ConfigError(where, f"messages[{i}] must be an object with role and content")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def read_prompt_file(path: str | Path, field: str = "--prompt-file") -> list[Prompt]:
    """The prompts of a file, not yet tokenised (``ids`` empty)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(field, f"cannot read {p}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(field, f"{p} is not UTF-8 text (byte {err.start})") from None
    if p.suffix.lower() != ".jsonl":
        if not text.strip():
            raise ConfigError(field, f"{p} is empty")
        return [Prompt((), p.name, text=text)]
    out: list[Prompt] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{field} {p.name}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(where, f"not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or ("prompt" in obj) == ("messages" in obj):
            raise ConfigError(where, "needs exactly one of a 'prompt' string or 'messages'")
        if "prompt" in obj:
            if not isinstance(obj["prompt"], str) or not obj["prompt"]:
                raise ConfigError(where, "'prompt' must be a non-empty string")
            out.append(Prompt((), f"{p.name}:{n}", text=obj["prompt"]))
        else:
            out.append(Prompt((), f"{p.name}:{n}", messages=_messages(where, obj["messages"])))
    if not out:
        raise ConfigError(field, f"{p} holds no prompts")
    return out


def tokenize(tok: Any, prompt: Prompt, chat: str = "auto", field: str = "--prompt") -> Prompt:
    """``prompt`` with its token ids (chat template as ``chat`` says; see the module doc)."""
    if chat not in CHAT_MODES:
        raise ConfigError("--chat", f"must be one of {', '.join(CHAT_MODES)}, got {chat!r}")
    where = field if prompt.source == field else f"{field} {prompt.source}"
    template = getattr(tok, "chat_template", None)
    messages = prompt.messages
    if messages is None and chat == "on":
        messages = ({"role": "user", "content": prompt.text or ""},)
    if messages is not None:
        if chat == "off" or not template:
            why = "--chat off" if chat == "off" else "the tokenizer has no chat template"
            raise ConfigError(where, f"chat messages need a chat template ({why})")
        ids = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
    else:
        ids = tok(prompt.text or "", add_special_tokens=True)["input_ids"]
    ids = [int(i) for i in ids]
    if not ids:
        raise ConfigError(where, "tokenises to no tokens")
    return Prompt(tuple(ids), prompt.source, prompt.text, prompt.messages)


def load_prompts(
    model_dir: str | Path | None,
    text: str | None = None,
    file: str | Path | None = None,
    chat: str = "auto",
) -> list[Prompt]:
    """``--prompt`` / ``--prompt-file`` as token ids (exactly one of them)."""
    if (text is None) == (file is None):
        raise ConfigError("--prompt", "give --prompt TEXT or --prompt-file FILE (one of them)")
    field = "--prompt" if text is not None else "--prompt-file"
    if text is not None and not text:
        raise ConfigError("--prompt", "is empty")
    raw = [Prompt((), "--prompt", text=text)] if text is not None else read_prompt_file(file or "")
    tok = load_tokenizer(model_dir, field)
    return [tokenize(tok, p, chat, field) for p in raw]


def context_limit(config: Any) -> int | None:
    """The longest sequence the model's positions cover (None when it names no limit)."""
    from ppsd_real.arch.support import text_config

    cfg = text_config(config)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_context(
    prompts: list[Prompt], new_tokens: int, limit: int | None, field: str = "--prompt"
) -> None:
    """Refuse a prompt whose length plus the tokens to generate exceeds the model's context."""
    if limit is None:
        return
    for p in prompts:
        if len(p.ids) + new_tokens > limit:
            where = field if p.source == field else f"{field} {p.source}"
            raise ConfigError(
                where,
                f"{len(p.ids)} prompt tokens + {new_tokens} new tokens exceed the model's "
                f"context of {limit} positions",
            )


def decode(tok: Any, ids: list[int] | tuple[int, ...]) -> str:
    """Token ids as text (special tokens kept: what the model really produced)."""
    return str(tok.decode(list(ids), skip_special_tokens=False))


def add_prompt_args(parser: argparse.ArgumentParser) -> None:
    """``--prompt`` / ``--prompt-file`` / ``--chat`` / ``--show-text`` (shared by the
    commands that decode a user's prompts)."""
    g = parser.add_argument_group("prompts")
    g.add_argument(
        "--prompt",
        default=None,
        help="prompt text (tokenised by the model's tokenizer) (default: none)",
    )
    g.add_argument(
        "--prompt-file",
        default=None,
        help="plain text (one prompt) or .jsonl: one {'prompt': ...} or {'messages': [...]} a "
        "line (default: none)",
    )
    g.add_argument(
        "--chat",
        default="auto",
        choices=CHAT_MODES,
        help="chat template: auto (for 'messages'), on (plain prompts too), off (default: auto)",
    )
    g.add_argument(
        "--show-text", action="store_true", help="print each decoded continuation (default: off)"
    )


def from_args(
    args: argparse.Namespace, model_dir: str | None, new_tokens: int
) -> list[Prompt] | None:
    """A command's ``--prompt`` / ``--prompt-file`` (see ``add_prompt_args``), tokenised and
    checked against the model's context before its weights load; None when neither is given."""
    if args.prompt is None and args.prompt_file is None:
        return None
    got = load_prompts(model_dir, args.prompt, args.prompt_file, args.chat)
    from ppsd_real.model_loading import read_config

    field = "--prompt-file" if args.prompt_file is not None else "--prompt"
    check_context(
        got, new_tokens, context_limit(read_config(model_dir or "", "--model-dir")), field
    )
    return got


def synthetic_prompt(vocab: int, seed: int = 0, n: int = 8) -> list[int]:
    """``n`` token ids spread over the vocabulary (never id 0), fixed by ``seed``: the prompt of
    a model without a tokenizer (random presets), where no text means anything."""
    return [1 + (seed * 7 + i * 13) % (vocab - 1) for i in range(n)]


def default_prompt(model_dir: str | Path | None, vocab: int, seed: int = 0) -> list[int]:
    """The prompt when the user gives none: for a model folder with a tokenizer, the start
    (64 tokens) of a held-out stdlib module, so a trained model's early-exit acceptance is
    measured on text it did not train on; else ``synthetic_prompt``."""
    if model_dir and (Path(model_dir) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        from ppsd_real.lm.corpus import load_corpus

        held = [p for p in load_corpus().held_out if p.name == DEFAULT_PROMPT_MODULE]
        if held:
            tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
            text = held[0].read_text(encoding="utf-8", errors="replace")
            return tok.encode(text).ids[:64]
    return synthetic_prompt(vocab, seed)
