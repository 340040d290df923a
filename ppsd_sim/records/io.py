"""Reading and writing records: JSON or YAML in, JSON out, always atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ppsd_sim.errors import ConfigError

#: any one kind of path as the keys of ``write_all``'s mapping (a Mapping is invariant in them)
_PathT = TypeVar("_PathT", bound=str | os.PathLike[str])


def read_text(path: str | os.PathLike[str], field: str = "file") -> str:
    """A UTF-8 text file's contents, or a ConfigError naming ``field`` (missing, unreadable,
    not UTF-8)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(field, f"cannot read {p}: {err}") from None


def load_document(path: str | os.PathLike[str], field: str = "file") -> Any:
    """Parse a JSON or YAML file (by extension; JSON otherwise), refusing it with a clear
    message naming the file and the position of the syntax error."""
    p = Path(path)
    text = read_text(p, field)
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(field, f"malformed YAML in {p}: {str(err).splitlines()[0]}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            field, f"malformed JSON in {p}: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None


def check_writable(path: str | os.PathLike[str], field: str) -> Path:
    """Refuse, before any work, an output path that cannot be written: a folder, a file in a
    read-only folder, a parent that is a file. Creates no file (missing folders are allowed:
    the writer makes them). Why: a traceback after minutes of measurement loses the work."""
    p = Path(path)
    if str(path) == "":
        raise ConfigError(field, "must be a file path, got an empty string")
    if p.is_dir():
        raise ConfigError(field, f"{p} is a folder; give a file path")
    parent = p.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(field, f"cannot write {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot write {p}: folder {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(field, f"cannot write {p}: the file is read-only")
    return p


def check_writable_dir(path: str | os.PathLike[str], field: str) -> Path:
    """Like ``check_writable`` for an output folder (it may exist, or be created)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(field, f"{p} is a file; give a folder")
    probe = p
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(field, f"cannot create {p}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot write into {p}: folder {probe} is not writable")
    return p


def _temp_beside(p: Path, data: bytes) -> str:
    """Write ``data`` to a fresh temporary file in ``p``'s folder (synced) and return its path."""
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; records are meant to be shared
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write via a temporary file in the same folder and rename, so a crash never leaves a
    half-written file and an existing file is replaced whole or not at all."""
    p = Path(path)
    tmp = _temp_beside(p, data)
    try:
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write_bytes`` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_all(files: Mapping[_PathT, str | bytes]) -> list[Path]:
    """Write several outputs of one command: all of them or none. Every file is first written
    to a temporary file beside its target; only when all succeeded are they renamed into place
    (a failure before that leaves every existing file untouched)."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            p = Path(path)
            temps.append(
                (_temp_beside(p, data.encode("utf-8") if isinstance(data, str) else data), p)
            )
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, p in temps:
        os.replace(tmp, p)
    return [p for _, p in temps]


def dumps(obj: Any) -> str:
    """Canonical JSON text of a record (``to_dict``) or plain data; NaN/inf are refused."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(path: str | os.PathLike[str], record: Any) -> Path:
    """Serialise first (so a bad record raises before touching disk), then write atomically."""
    return atomic_write_text(path, dumps(record))


def read_record(path: str | os.PathLike[str], cls: Any, field: str = "file") -> Any:
    """Load and validate one record of type ``cls`` from a JSON/YAML file."""
    return cls.from_dict(load_document(path, field))
