"""Atomic Parquet writes: every writer adds its own files, never rewrites another's.

Runs execute in parallel processes and DuckDB allows one writer per database file, so the
system of record is a folder of Parquet files per table. A file is written under a temporary
name that the ``*.parquet`` glob never matches, fsynced, then renamed into place: readers see
either the whole file or nothing, even if the writer is killed mid-write.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_FILE = "_schema.parquet"
TMP_SUFFIX = ".parquet.tmp"


def table_dir(root: Path, table: str) -> Path:
    """The folder holding ``table``'s Parquet files."""
    return root / table


def _write_atomically(table: pa.Table, final: Path) -> Path:
    tmp = final.with_name(f".{final.stem}-{uuid.uuid4().hex}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def ensure_table(root: Path, table: str, schema: pa.Schema) -> Path:
    """Create the table folder with an empty schema file, so views work before any data."""
    folder = table_dir(root, table)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / SCHEMA_FILE
    if not marker.exists():
        _write_atomically(schema.empty_table(), marker)
    return folder


def append_rows(
    root: Path, table: str, schema: pa.Schema, rows: Iterable[Mapping[str, Any]]
) -> Path | None:
    """Write ``rows`` as one new Parquet file of ``table``; returns its path (None if no rows)."""
    rows = list(rows)
    if not rows:
        return None
    folder = ensure_table(root, table, schema)
    data = pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return _write_atomically(data, folder / f"{stamp}-{uuid.uuid4().hex[:12]}.parquet")


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
