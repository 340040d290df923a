"""A small byte-level BPE tokenizer trained on the training part of the corpus.

Byte-level, so any text (any Python version's stdlib, any user prompt) encodes without
unknown tokens; BPE to 2,048 symbols, so a token carries several characters of code and the
model's vocabulary (and LM head) stays small enough to ship.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ("<|endoftext|>",)


def train_tokenizer(texts: list[str], vocab_size: int = 2048) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_for_transformers(tok: Tokenizer, out: Path) -> None:
    """Write tokenizer.json + config so ``AutoTokenizer.from_pretrained(out)`` loads it."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=SPECIALS[0], bos_token=SPECIALS[0]
    )
    fast.save_pretrained(out)
