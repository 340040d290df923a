"""The results store: a folder of Parquet part files, each written whole or not at all.

Every finished batch becomes one part (temporary file, fsync, rename), so a kill at any
moment — SIGKILL included — leaves only complete parts behind; the IDs in them are what a
rerun skips. A lock file keeps two sweeps from writing the same folder at once (the kernel
drops the lock when its process dies, however it dies).
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ppsd_sim.errors import ConfigError
from ppsd_sim.sweep.table import COLUMNS

if TYPE_CHECKING:
    import pandas as pd

FORMAT = 1
MARKER = "_ppsd_sweep.json"
_TYPES = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "str": pa.string()}
SCHEMA = pa.schema([pa.field(name, _TYPES[kind]) for name, kind in COLUMNS])


class ResultStore:
    """An open, locked results folder. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._seq = 0
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> ResultStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create or adopt the folder, take the lock, clear temp files a kill left behind."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise ConfigError("out", f"{p} exists and is not a folder")
        marker = p / MARKER
        if (
            p.exists()
            and not marker.exists()
            and any(not c.name.startswith(".") for c in p.iterdir())
        ):
            raise ConfigError("out", f"{p} is not empty and is not a sweep results folder")
        p.mkdir(parents=True, exist_ok=True)
        fd = os.open(p / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError("out", f"another sweep is writing to {p}") from None
        self._lock_fd = fd
        if marker.exists():
            _check_marker(marker)
        else:
            _atomic_bytes(marker, json.dumps({"format": FORMAT}).encode())
        for tmp in p.glob(".part-*.tmp"):
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def done_ids(self) -> set[str]:
        """IDs of every point already recorded (finished or failed)."""
        ids: set[str] = set()
        for part in part_files(self.path):
            ids.update(_read_part(part, ["point_id"]).column("point_id").to_pylist())
        return ids

    def write(self, rows: Sequence[dict[str, Any]]) -> Path | None:
        """Write rows as one new part file, atomically; returns its path."""
        if self._lock_fd is None:
            raise RuntimeError("store is not open")
        if not rows:
            return None
        table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
        self._seq += 1
        final = self.path / f"part-{self._tag}-{self._seq:06d}.parquet"
        tmp = self.path / f".{final.name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path)
        return final


def part_files(path: str | os.PathLike[str]) -> list[Path]:
    """The complete part files of a results folder, in a stable order."""
    return sorted(Path(path).glob("part-*.parquet"))


def read_table(path: str | os.PathLike[str], columns: Iterable[str] | None = None) -> pa.Table:
    """Every row of a results folder as one Arrow table."""
    p = Path(path)
    if not (p / MARKER).exists():
        raise ConfigError("path", f"{p} is not a sweep results folder (no {MARKER})")
    cols = None if columns is None else list(columns)
    parts = [_read_part(f, cols) for f in part_files(p)]
    if not parts:
        schema = SCHEMA if cols is None else pa.schema([SCHEMA.field(c) for c in cols])
        return schema.empty_table()
    return pa.concat_tables(parts)


def load_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The whole results table in pandas: one row per point, ``status`` ok or failed."""
    import pandas as pd

    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return read_table(path).to_pandas(types_mapper=nullable.get)


def _read_part(path: Path, columns: list[str] | None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns, schema=SCHEMA)
    except (OSError, pa.ArrowException) as err:
        raise ConfigError("out", f"cannot read part file {path}: {err}") from None


def _check_marker(marker: Path) -> None:
    try:
        fmt = json.loads(marker.read_text()).get("format")
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError("out", f"unreadable {marker}: {err}") from None
    if fmt != FORMAT:
        raise ConfigError("out", f"{marker.parent} holds format {fmt}, this ppsd writes {FORMAT}")


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
