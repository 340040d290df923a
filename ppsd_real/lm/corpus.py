"""The training corpus: the Python standard library's own source files, read from the
running interpreter (nothing is copied into the repository), split into train and held-out
parts by a pinned list of modules that every Python >= 3.11 ships."""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

#: Held-out modules (path relative to the stdlib folder). Pinned, and present in 3.11–3.13.
HELD_OUT = (
    "bisect.py",
    "calendar.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "ipaddress.py",
    "json/decoder.py",
    "json/encoder.py",
    "numbers.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "sched.py",
    "secrets.py",
    "shlex.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
    "timeit.py",
    "tokenize.py",
    "uuid.py",
)

#: Folders left out entirely: test suites, GUI and vendored code, generated data tables.
EXCLUDED_DIRS = (
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "ensurepip",
    "tkinter",
    "turtledemo",
    "__pycache__",
    "encodings",
    "pydoc_data",
)


@dataclass(frozen=True)
class Corpus:
    root: Path
    train: tuple[Path, ...]
    held_out: tuple[Path, ...]

    def read(self, part: str) -> list[str]:
        """The texts of one part ('train' or 'held_out'), in a fixed order."""
        files = self.train if part == "train" else self.held_out
        return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def load_corpus(root: Path | None = None) -> Corpus:
    """Split the stdlib's .py files into train and held-out parts (sorted, deterministic)."""
    root = root or stdlib_root()
    held, train = [], []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if any(part in EXCLUDED_DIRS for part in rel.parts[:-1]):
            continue
        (held if rel.as_posix() in HELD_OUT else train).append(p)
    return Corpus(root, tuple(train), tuple(held))
