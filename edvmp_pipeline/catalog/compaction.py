"""Automatic, tiered compaction of the result tables: the file count stays bounded by itself.

Every run appends its own small Parquet files (one per table), so an event-driven library
would pile up one file per upload per table and every read would slow down with history.
After each append the writer calls :func:`maybe_compact`: when a table holds ``FANOUT_L0``
fresh files (level 0), they are merged into one level-1 file; ``FANOUT`` files of level n
merge into one of level n+1, and so on. A table of N rows thus has at most
``FANOUT_L0 + FANOUT * levels`` files (levels = log_FANOUT(N / FANOUT_L0), about 5 at 100,000
versions), and each row is rewritten once per level: the amortised cost per write is a
constant, not a function of the history.

Safety:
- concurrent writers: a merge takes only the files it listed; files written after that stay;
- two compactions: a non-blocking lock per table, so a writer never waits for another's merge;
- readers: the merged file is written (atomically) before the merged ones are deleted, so no
  row is ever missing; the duplicates visible in between are the same rows, which every read
  collapses (newest row per key); a reader that listed a file just deleted retries
  (:func:`edvmp_pipeline.catalog.store.retry_on_vanished_file`);
- SIGKILL at any moment: before the rename nothing changed (a temp file is swept later);
  after it, the old files are still there and the next merge folds them in, deduplicated.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.lake import Lake, LocalLake, file_name
from edvmp_pipeline.catalog.parquet_files import SCHEMA_FILE, sweep_temp_files, utc_stamp

FANOUT_L0 = 32
FANOUT = 8
# Rows per row group of a merged file: sorted by partition key, so a keyed read skips the
# row groups whose min/max exclude the key.
ROW_GROUP_ROWS = 16_384
_LEVEL = re.compile(r"^L(\d+)-")


def level_of(path: Path | str) -> int:
    """The compaction level a data file belongs to (0 = written by a run)."""
    name = file_name(path)
    match = _LEVEL.match(name)
    if match:
        return int(match.group(1))
    # `edvmp compact` of the first release wrote "compacted-…" files.
    return 1 if name.startswith("compacted-") else 0


def as_lake(where: Path | Lake) -> Lake:
    """A catalog root folder as its local lake (callers may pass either)."""
    return where if not isinstance(where, Path) else LocalLake(where)


def file_budget(versions: int) -> int:
    """The most data files a table holding ``versions`` versions keeps (tests, README)."""
    levels, capacity = 0, FANOUT_L0
    while capacity < max(versions, 1):
        capacity *= FANOUT
        levels += 1
    return FANOUT_L0 + FANOUT * (levels + 1)


@dataclass(frozen=True)
class CompactionResult:
    """What compacting one table did."""

    table: str
    files_before: int
    files_after: int
    rows: int


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (files of older releases lack new ones)."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def merge(table: str, files: Sequence[Path | str], lake: Lake | None = None) -> pa.Table:
    """The rows of ``files``, newest per key only, sorted by key."""
    schema = schemas.TABLES[table]
    keys, newest = schemas.DEDUPE[table]

    def read(p: Path | str) -> pa.Table:
        return lake.read(str(p)) if lake is not None else pq.ParquetFile(p).read()

    data = pa.concat_tables([conform(read(p), schema) for p in files])
    # Oldest first, so that the highest row number of each key is its newest row.
    data = data.sort_by([(newest, "ascending", "at_start")])
    data = data.append_column("_row", pa.array(range(data.num_rows), pa.int64()))
    latest = data.group_by(list(keys), use_threads=False).aggregate([("_row", "max")])
    kept = data.take(latest.column("_row_max")).drop_columns(["_row"])
    return kept.sort_by([(k, "ascending") for k in keys])


def level_for_rows(rows: int) -> int:
    """The level a merged file of ``rows`` rows belongs to: its size class, so that a few big
    files (a backfill's) never get merged again with every small one that follows."""
    level, capacity = 1, FANOUT_L0 * FANOUT
    while rows > capacity:
        level, capacity = level + 1, capacity * FANOUT
    return level


def _merge_level(lake: Lake, table: str, level: int, files: Sequence[str]) -> int:
    merged = merge(table, files, lake)
    target_level = max(level + 1, level_for_rows(merged.num_rows))
    name = f"L{target_level}-{utc_stamp()}-{uuid.uuid4().hex[:12]}.parquet"
    lake.write(table, name, merged, row_group_size=ROW_GROUP_ROWS)
    for p in files:
        lake.delete(p)
    return merged.num_rows


def _due_levels(files: Sequence[str], *, everything: bool) -> dict[int, list[str]]:
    by_level: dict[int, list[str]] = {}
    for p in files:
        by_level.setdefault(level_of(p), []).append(p)
    if everything:
        return by_level
    return {
        lvl: group
        for lvl, group in by_level.items()
        if len(group) >= (FANOUT_L0 if lvl == 0 else FANOUT)
    }


def maybe_compact(root: Path | Lake, table: str) -> bool:
    """Merge the levels of ``table`` that are full; never waits for another compaction.

    Called by every writer after it appends; costs one directory listing when nothing is
    due. Returns True when something was merged.
    """
    lake = as_lake(root)
    if not _due_levels(lake.files(table), everything=False):
        return False
    with lake.lease(table, wait=False) as locked:
        if not locked:
            return False
        merged_any = False
        level = 0
        while True:
            # Re-list under the lock: another compaction may have finished meanwhile.
            due = _due_levels(lake.files(table), everything=False)
            ready = sorted(lvl for lvl in due if lvl >= level)
            if not ready:
                return merged_any
            level = ready[0]
            _merge_level(lake, table, level, sorted(due[level]))
            merged_any = True


def compact_table(root: Path | Lake, table: str, *, min_files: int = 2) -> CompactionResult:
    """Merge every data file of ``table`` into one when it has at least ``min_files``."""
    lake = as_lake(root)
    with lake.lease(table, wait=True):
        files = lake.files(table)
        if len(files) < max(2, min_files):
            return CompactionResult(table, len(files), len(files), -1)
        top = max(level_of(p) for p in files)
        rows = _merge_level(lake, table, top, files)
        return CompactionResult(table, len(files), len(lake.files(table)), rows)


def compact(root: Path | Lake, *, min_files: int = 2) -> list[CompactionResult]:
    """Compact every result table at ``root`` fully (and sweep stale temp files).

    Never needed for the file count (writers keep it bounded); useful before copying a
    catalog elsewhere, or to fold the duplicates of heavy re-processing.
    """
    lake = as_lake(root)
    if lake.local_root is not None:
        sweep_temp_files(lake.local_root)
    return [compact_table(lake, t, min_files=min_files) for t in schemas.TABLES]


__all__ = [
    "FANOUT",
    "FANOUT_L0",
    "SCHEMA_FILE",
    "CompactionResult",
    "compact",
    "compact_table",
    "file_budget",
    "level_of",
    "maybe_compact",
    "merge",
]
