"""The video analysis in the catalog: its rows, its fingerprint index, its near-duplicate pairs.

Two result tables (``schemas.ANALYSIS``, ``NEAR_DUPLICATES``) in the same lake as the others,
compacted the same way. A version's fingerprint and its index (the LSH buckets of
:func:`~edvmp_pipeline.domain.fingerprints.bucket_ids`) live in the state store
(``fingerprints`` keyed by version, ``fingerprint_buckets`` keyed by bucket), because matching
reads both by key on the hot path: "which held versions may be near-duplicates of this one"
is one keyed read per bucket of the new version, bounded by its buckets times
:data:`MAX_BUCKET`, and the candidates' fingerprints are point reads, whatever the size of
the library. Measured on the way here: with the buckets in Parquet joined in DuckDB, landing
and looking up one version took 150 ms at 1,000 held versions and 310 ms at 5,000 (the join
scanned the index); with the buckets keyed but the fingerprints read back from the analysis
table, the look-up took 38 ms at 1,000 and 246 ms at 100,000 (a keyed read of Parquet
decodes whole row groups).

Order of writes, so that two runs analysing near-duplicates at the same moment never both miss
the pair: a run lands its rows and buckets first and looks for candidates afterwards. Of two
such runs, the one that looks last sees the other's buckets (and both may record the pair:
the ``near_duplicates`` view shows each pair once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edvmp_pipeline.catalog.state_store import utcnow
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.fingerprints import Fingerprint, bucket_ids
from edvmp_pipeline.domain.media_analysis import AnalysisRecord
from edvmp_pipeline.domain.records import ObjectVersion

IMAGES = "images"
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
    """Land analysis rows, then store and index their fingerprints (see the module doc)."""
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
    catalog.state.index_fingerprints(
        {pk: record.fingerprint for pk, _, record in analysed if record.fingerprint is not None}
    )


def land_pairs(catalog: Catalog, pairs: Sequence[Mapping[str, Any]], *, run_id: str | None) -> None:
    """Land near-duplicate pairs (``schemas.NEAR_DUPLICATES`` columns but the times)."""
    now = utcnow()
    catalog._append("near_duplicates", [{**p, "found_at": now, "run_id": run_id} for p in pairs])


def shared_buckets(
    catalog: Catalog, fingerprints: Mapping[str, Fingerprint]
) -> dict[tuple[str, str], int]:
    """``(new, held) → buckets shared`` for every held version sharing at least one usable
    bucket with one of ``fingerprints`` (keyed by partition key; they are held too once
    landed, and never pair with themselves). A bucket held by more than :data:`MAX_BUCKET`
    versions is not used."""
    mine = {pk: bucket_ids(fp) for pk, fp in fingerprints.items()}
    members = catalog.state.bucket_members(
        sorted({b for bs in mine.values() for b in bs}), limit=MAX_BUCKET
    )
    shared: dict[tuple[str, str], int] = {}
    for pk, bs in mine.items():
        for b in bs:
            for other in members.get(b, ()):
                if other != pk:
                    shared[(pk, other)] = shared.get((pk, other), 0) + 1
    return shared


def analysis_rows(catalog: Catalog, partition_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The newest ``analysis`` row of each of these versions that has one."""
    cols, rows = catalog._scan_by_key("analysis", list(dict.fromkeys(partition_keys)))
    out = {}
    for values in rows:
        row = dict(zip(cols, values, strict=True))
        out[row["partition_key"]] = row
    return out


def near_duplicate_counts(catalog: Catalog, partition_keys: Sequence[str]) -> dict[str, int]:
    """Per version: how many versions of *other* objects that were there before it (uploaded
    earlier: last-modified, then registered, then partition key) it is a near-duplicate of.

    By upload order, not by which side's analysis found the pair: a pair is found by either
    version (a forced re-analysis, two runs at once), and the earlier upload is the original
    either way."""
    keys = list(dict.fromkeys(partition_keys))
    if not keys:
        return {}
    _, pairs = catalog.query(
        "SELECT partition_key, duplicate_of FROM near_duplicates WHERE NOT same_object AND "
        "(list_contains($keys, partition_key) OR list_contains($keys, duplicate_of))",
        {"keys": keys},
    )
    states = catalog.job_states(sorted({k for pair in pairs for k in pair}))
    never = datetime.min.replace(tzinfo=UTC)

    def order(pk: str) -> tuple[datetime, datetime, str]:
        s = states.get(pk)
        if s is None:
            return never, never, pk
        return s.last_modified or never, s.registered_at or never, pk

    wanted = set(keys)
    counts: dict[str, int] = {}
    for a, b in pairs:
        later = a if order(a) > order(b) else b
        if later in wanted:
            counts[later] = counts.get(later, 0) + 1
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
        if extra["true_peak_dbtp"] is None and extra["integrated_lufs"] is not None:
            # Audio that is digital silence has no peak (-inf dBTP): under every ceiling.
            extra["true_peak_dbtp"] = float("-inf")
        extra["near_duplicates"] = dupes.get(row["partition_key"], 0) if analysis else None
        out.append({**row, **extra})
    return out


def analysis_result(catalog: Catalog, partition_key: str) -> dict[str, Any] | None:
    """One version's newest analysis row (without run id) with its near-duplicates (the
    versions it matched and the versions that matched it), or None when not analysed."""
    row = analysis_rows(catalog, [partition_key]).get(partition_key)
    if row is None:
        return None
    out = {k: v for k, v in row.items() if k not in ("run_id", "partition_key")}
    _, pairs = catalog.query(
        "SELECT partition_key, object_key, duplicate_of, duplicate_object_key, score, "
        "offset_s, same_object FROM near_duplicates WHERE ? IN (partition_key, duplicate_of) "
        "ORDER BY score DESC",
        [partition_key],
    )
    out["near_duplicates"] = [
        {
            "job_key": dup if pk == partition_key else pk,
            "object_key": dup_key if pk == partition_key else key,
            "score": score,
            "offset_s": offset if pk == partition_key else -offset,
            "same_object": same,
        }
        for pk, key, dup, dup_key, score, offset, same in pairs
    ]
    return out
