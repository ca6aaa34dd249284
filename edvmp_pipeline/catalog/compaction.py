"""Compaction: merge a table's many small Parquet files into one.

Every run appends its own small files, so a busy bucket (one run per upload) piles up
thousands of them and view queries slow down with the file count. Compaction writes the
union of a table's files as one new file (atomically, like every write) and only then
deletes the files it merged. A reader never sees a row missing; one that globbed the folder
just before the deletes can fail once with a missing-file error and succeeds on retry, so run
it when the catalog is quiet (e.g. from cron). A lock file keeps two compactions apart.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.parquet_files import SCHEMA_FILE, _write_atomically, sweep_temp_files

COMPACTED_PREFIX = "compacted-"


@dataclass(frozen=True)
class CompactionResult:
    """What compacting one table did."""

    table: str
    files_before: int
    files_after: int
    rows: int


def compact_table(root: Path, table: str, *, min_files: int = 2) -> CompactionResult:
    """Merge ``table``'s data files into one when it has at least ``min_files``."""
    folder = root / table
    files = sorted(p for p in folder.glob("*.parquet") if p.name != SCHEMA_FILE)
    if len(files) < min_files:
        return CompactionResult(table, len(files), len(files), -1)
    schema = schemas.TABLES[table]
    # Files written by older versions may lack newer columns: conform each to the schema.
    merged = pa.concat_tables([_conform(pq.read_table(p), schema) for p in files])
    stamp = files[-1].stem
    _write_atomically(merged, folder / f"{COMPACTED_PREFIX}{stamp}.parquet")
    for p in files:
        p.unlink(missing_ok=True)
    return CompactionResult(table, len(files), 1, merged.num_rows)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def compact(root: Path, *, min_files: int = 2) -> list[CompactionResult]:
    """Compact every table of the catalog at ``root`` (and sweep stale temp files)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".compaction.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep_temp_files(root)
        return [compact_table(root, t, min_files=min_files) for t in schemas.TABLES]
