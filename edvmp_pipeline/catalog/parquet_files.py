"""Atomic Parquet writes: every writer adds its own files, never rewrites another's.

Runs execute in parallel processes and DuckDB allows one writer per database file, so the
system of record is a folder of Parquet files per table. A file is written under a temporary
name that the ``*.parquet`` glob never matches, fsynced, then renamed into place: readers see
either the whole file or nothing, even if the writer is killed mid-write.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_FILE = "_schema.parquet"
TMP_SUFFIX = ".parquet.tmp"
LOCK_FILE = ".compaction.lock"


def table_dir(root: Path, table: str) -> Path:
    """The folder holding ``table``'s Parquet files."""
    return root / table


def utc_stamp() -> str:
    """A sortable UTC timestamp for file names."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def data_files(folder: Path) -> list[Path]:
    """The data files of one table folder (not the schema marker, not temp files)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if e.name.endswith(".parquet") and not e.name.startswith((".", "_"))
            )
    except FileNotFoundError:
        return []


def write_atomically(table: pa.Table, final: Path, *, row_group_size: int | None = None) -> Path:
    """Write ``table`` to ``final`` so that readers see the whole file or none of it."""
    tmp = final.with_name(f".{final.stem}-{uuid.uuid4().hex}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd", row_group_size=row_group_size)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def ensure_table(root: Path, table: str, schema: pa.Schema) -> Path:
    """Create the table folder with an empty schema file, so views work before any data.

    A marker written by an older release (fewer columns) is replaced: views read every file
    by name, so the marker is what makes a new column exist before the first file with it.
    """
    folder = table_dir(root, table)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / SCHEMA_FILE
    try:
        current = pq.read_schema(marker)
    except (FileNotFoundError, pa.ArrowInvalid):
        current = None
    if current is None or not current.equals(schema):
        write_atomically(schema.empty_table(), marker)
    return folder


def new_stem() -> str:
    """A fresh, sortable file stem (writes of one batch to several tables share it)."""
    return f"{utc_stamp()}-{uuid.uuid4().hex[:12]}"


def append_rows(
    root: Path,
    table: str,
    schema: pa.Schema,
    rows: Iterable[Mapping[str, Any]],
    *,
    stem: str | None = None,
) -> Path | None:
    """Write ``rows`` as one new Parquet file of ``table``; returns its path (None if no rows)."""
    rows = list(rows)
    if not rows:
        return None
    folder = ensure_table(root, table, schema)
    return write_atomically(rows_table(schema, rows), folder / f"{stem or new_stem()}.parquet")


def rows_table(schema: pa.Schema, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """``rows`` (dicts) as an Arrow table of exactly ``schema``."""
    # Column by column: a million check rows build in a fraction of from_pylist's time.
    return pa.Table.from_arrays(
        [pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema], schema=schema
    )


def sweep_temp_files(root: Path, older_than_s: float = 3600.0) -> int:
    """Delete temp files left by killed writers (never visible to readers, only disk)."""
    now = datetime.now(UTC).timestamp()
    removed = 0
    for tmp in root.glob(f"*/.*{TMP_SUFFIX}"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


@contextmanager
def table_lock(folder: Path, *, wait: bool) -> Iterator[bool]:
    """Hold ``folder``'s compaction lock; yields False when it is taken and not ``wait``."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
