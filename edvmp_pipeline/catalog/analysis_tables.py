"""The video analysis in the catalog: its rows, its fingerprint index, its near-duplicate pairs.

Three result tables (``schemas.ANALYSIS``, ``FINGERPRINT_BUCKETS``, ``NEAR_DUPLICATES``) in
the same lake as the others, compacted the same way. The ``analysis`` row is the one home of
a version's fingerprint; ``fingerprint_buckets`` is its index (the LSH buckets of
:func:`~edvmp_pipeline.domain.fingerprints.bucket_ids`), which turns "which held versions may
be near-duplicates of these" into one join on an integer column instead of a comparison with
every fingerprint.

Order of writes, so that two runs analysing near-duplicates at the same moment never both miss
the pair: a run lands its rows and buckets first and looks for candidates afterwards. Of two
such runs, the one that looks last sees the other's buckets (and both may record the pair:
the ``near_duplicates`` view shows each pair once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.state_store import utcnow
from edvmp_pipeline.catalog.store import Catalog, retry_on_vanished_file
from edvmp_pipeline.domain.fingerprints import Fingerprint, bucket_ids
from edvmp_pipeline.domain.media_analysis import AnalysisRecord
from edvmp_pipeline.domain.records import ObjectVersion

IMAGES = "images"
BUCKETS = "fingerprint_buckets"
# A bucket shared by more held versions than this says nothing (a logo, a test card): like a
# stop word, it is not used to find candidates (FingerprintIndex.max_bucket).
MAX_BUCKET = 256


def image_location(catalog: Catalog, partition_key: str, kind: str, path: Path) -> str:
    """Store one analysis image of a version next to the catalog; returns where it is.

    ``images/<sha256 of the partition key>/<kind>.jpg`` under the catalog folder or S3
    prefix: a fixed-length name whatever the object key holds.
    """
    digest = hashlib.sha256(partition_key.encode("utf-8")).hexdigest()[:32]
    return catalog.lake.put_blob(f"{IMAGES}/{digest}/{kind}.jpg", Path(path).read_bytes())


def land_analysis(
    catalog: Catalog,
    analysed: Sequence[tuple[str, ObjectVersion, AnalysisRecord]],
    *,
    run_id: str | None,
) -> None:
    """Land analysis rows, then their fingerprints' buckets (see the module doc)."""
    if not analysed:
        return
    now = utcnow()
    rows = [
        {
            **record.as_row(),
            "partition_key": pk,
            "object_key": version.object_key,
            "etag": version.etag,
            "analysed_at": now,
            "run_id": run_id,
        }
        for pk, version, record in analysed
    ]
    catalog._append("analysis", rows)
    buckets = [
        {"partition_key": pk, "bucket": b, "analysed_at": now}
        for pk, _, record in analysed
        if record.fingerprint is not None
        for b in bucket_ids(record.fingerprint)
    ]
    catalog._append(BUCKETS, buckets)


def land_pairs(catalog: Catalog, pairs: Sequence[Mapping[str, Any]], *, run_id: str | None) -> None:
    """Land near-duplicate pairs (``schemas.NEAR_DUPLICATES`` columns but the times)."""
    now = utcnow()
    catalog._append("near_duplicates", [{**p, "found_at": now, "run_id": run_id} for p in pairs])


def shared_buckets(
    catalog: Catalog, fingerprints: Mapping[str, Fingerprint]
) -> dict[tuple[str, str], int]:
    """``(new, held) → buckets shared`` for every held version sharing at least one usable
    bucket with one of ``fingerprints`` (keyed by partition key; they are held too once
    landed, and never pair with themselves).

    One DuckDB join of the batch's buckets with the index; a bucket held by more than
    :data:`MAX_BUCKET` versions is skipped.
    """
    mine = [(pk, b) for pk, fp in fingerprints.items() for b in bucket_ids(fp)]
    if not mine:
        return {}
    batch = pa.table(
        {
            "partition_key": pa.array([m[0] for m in mine], pa.string()),
            "bucket": pa.array([m[1] for m in mine], pa.int64()),
        }
    )

    def run() -> dict[tuple[str, str], int]:
        files = catalog.lake.files(BUCKETS)
        if not files:
            return {}
        con = duckdb.connect(":memory:")
        try:
            con.register("_mine", batch)
            if catalog.on_s3:
                con.register("_held", catalog.lake.dataset(BUCKETS, schemas.TABLES[BUCKETS], files))
                held = "_held"
            else:
                held = "read_parquet($files)"
            # bandit B608 waived: spliced names are catalog constants, values are bound
            sql = f"""
                WITH hits AS (
                    SELECT DISTINCT m.partition_key AS a, h.partition_key AS b, h.bucket
                    FROM _mine m JOIN {held} h ON h.bucket = m.bucket),
                sizes AS (SELECT bucket, count(DISTINCT b) AS n FROM hits GROUP BY bucket)
                SELECT a, b, count(*) FROM hits JOIN sizes USING (bucket)
                WHERE sizes.n <= $max_bucket AND a <> b GROUP BY a, b
                """  # nosec B608
            params: dict[str, Any] = {"max_bucket": MAX_BUCKET}
            if not catalog.on_s3:
                params["files"] = files
            rows = con.execute(sql, params).fetchall()
        finally:
            con.close()
        return {(a, b): int(n) for a, b, n in rows}

    return retry_on_vanished_file(run)


def analysis_rows(catalog: Catalog, partition_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The newest ``analysis`` row of each of these versions that has one."""
    cols, rows = catalog._scan_by_key("analysis", list(dict.fromkeys(partition_keys)))
    out = {}
    for values in rows:
        row = dict(zip(cols, values, strict=True))
        out[row["partition_key"]] = row
    return out


def fingerprints_of(catalog: Catalog, partition_keys: Sequence[str]) -> dict[str, Fingerprint]:
    """The catalogued fingerprint of each of these versions that has one."""
    return {
        pk: Fingerprint.from_hex(row["fingerprint_rate_hz"], row["fingerprint"])
        for pk, row in analysis_rows(catalog, partition_keys).items()
        if row.get("fingerprint") is not None and row.get("fingerprint_rate_hz")
    }


def near_duplicate_counts(catalog: Catalog, partition_keys: Sequence[str]) -> dict[str, int]:
    """Per version: how many versions of *other* objects it was found a near-duplicate of."""
    cols, rows = catalog._scan_by_key("near_duplicates", list(dict.fromkeys(partition_keys)))
    counts: dict[str, int] = {}
    for values in rows:
        row = dict(zip(cols, values, strict=True))
        if not row["same_object"]:
            counts[row["partition_key"]] = counts.get(row["partition_key"], 0) + 1
    return counts


# The analysis fields a policy row carries (domain.policy.ANALYSIS_FIELD_KINDS names them).
POLICY_FIELDS = (
    "integrated_lufs", "loudness_range_lu", "true_peak_dbtp", "leading_black_s",
    "trailing_black_s", "black_total_s", "freeze_total_s", "scene_cut_count", "decode_errors",
    "interlace", "hdr_class",
)  # fmt: skip


def with_analysis(catalog: Catalog, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``videos`` rows with their version's analysis fields and near-duplicate count added
    (None where a version has no analysis)."""
    keys = [r["partition_key"] for r in rows]
    found = analysis_rows(catalog, keys)
    dupes = near_duplicate_counts(catalog, keys)
    out = []
    for row in rows:
        analysis = found.get(row["partition_key"])
        extra: dict[str, Any] = {f: (analysis or {}).get(f) for f in POLICY_FIELDS}
        extra["near_duplicates"] = dupes.get(row["partition_key"], 0) if analysis else None
        out.append({**row, **extra})
    return out
