"""The video analysis of catalogued versions: which need it, analysing them, finding their
near-duplicates, landing it all. Plain Python shared by the pipeline step and the benchmarks.

Each version is decoded once (:func:`~edvmp_pipeline.adapters.analyzer.analyze`, from the
ffprobe output already in the catalog, so nothing is probed twice). An S3 object is streamed
once to a temporary file that is removed after (ffmpeg reading a presigned URL would range-read
a file whose index is at its end several times); a local file is read in place.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edvmp_pipeline.adapters.analyzer import analyze
from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.catalog import analysis_tables as tables
from edvmp_pipeline.catalog.store import SUCCEEDED, Catalog
from edvmp_pipeline.domain.errors import PipelineError
from edvmp_pipeline.domain.fingerprints import (
    DEFAULT_THRESHOLD,
    Fingerprint,
    best_alignment,
    shares_enough,
)
from edvmp_pipeline.domain.media_analysis import AnalysisParams, AnalysisRecord
from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord
from edvmp_pipeline.services.per_version import map_in_threads, versions_due

# Buckets two fingerprints must share to be scored (see domain/fingerprints.py for the
# measurement behind 3).
MIN_SHARED = 3


@dataclass(frozen=True)
class AnalysisSettings:
    """How the analysis runs: ffmpeg's time limit, images to store, parallel decodes."""

    timeout_s: float = 900.0
    images: tuple[str, ...] = ("poster",)
    workers: int = 1
    threshold: float = DEFAULT_THRESHOLD
    params: AnalysisParams = field(default_factory=AnalysisParams)


@dataclass(frozen=True)
class AnalysisFailure:
    """Why one version has no analysis."""

    partition_key: str
    version: ObjectVersion
    error_class: str
    reason: str


@dataclass
class AnalysisOutcome:
    """What one pass over a run's versions did."""

    analysed: list[tuple[str, ObjectVersion, AnalysisRecord]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    failed: list[AnalysisFailure] = field(default_factory=list)


def _analyse_one(
    catalog: Catalog,
    store: ObjectStoreResource,
    pk: str,
    version: ObjectVersion,
    record: VideoRecord,
    settings: AnalysisSettings,
) -> AnalysisRecord:
    with tempfile.TemporaryDirectory(prefix="edvmp-analysis-") as work:
        folder = Path(work)
        source = store.download(version, folder / "media")
        result = analyze(
            str(source),
            timeout_s=settings.timeout_s,
            streams=record,
            params=settings.params,
            image_dir=folder,
            images=settings.images,
        )
        # Stored before the row is landed: a row never names an image that is not there.
        stored = {
            kind: tables.image_location(catalog, pk, kind, Path(local))
            for kind, local in (("poster", result.poster), ("contact_sheet", result.contact_sheet))
            if local
        }
    return replace(result, **stored)


def _pair_row(
    a: tuple[str, ObjectVersion], b: tuple[str, ObjectVersion], score: float, offset_s: float
) -> dict[str, Any]:
    (pk, version), (other, other_version) = a, b
    return {
        "partition_key": pk,
        "object_key": version.object_key,
        "etag": version.etag,
        "duplicate_of": other,
        "duplicate_object_key": other_version.object_key,
        "duplicate_etag": other_version.etag,
        "same_object": (version.source, version.object_key)
        == (other_version.source, other_version.object_key),
        "score": round(score, 4),
        "offset_s": offset_s,
    }


def find_near_duplicates(
    catalog: Catalog,
    analysed: Mapping[str, tuple[ObjectVersion, Fingerprint]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[dict[str, Any]]:
    """Near-duplicate pair rows of these (already landed) versions against every analysed
    version, the batch included.

    Candidates come from the fingerprint index; only they are scored. A pair inside the
    batch is recorded once, by its later partition key.
    """
    shared = tables.shared_buckets(catalog, {pk: fp for pk, (_, fp) in analysed.items()})
    # Only pairs that can pass are read back: sharing fewer buckets than MIN_SHARED (or the
    # new one's informative frames) could only pass for a held fingerprint of one or two
    # informative frames, and those cannot overlap half of a longer one anyway.
    shared = {
        (a, b): n
        for (a, b), n in shared.items()
        if n >= min(MIN_SHARED, analysed[a][1].informative)
    }
    if not shared:
        return []
    held_keys = sorted({b for _, b in shared} - set(analysed))
    held_fps = catalog.state.fingerprints(held_keys)
    held_versions = catalog.versions(list(held_fps))
    fps: dict[str, Fingerprint] = {**held_fps, **{pk: fp for pk, (_, fp) in analysed.items()}}
    versions = {**held_versions, **{pk: v for pk, (v, _) in analysed.items()}}
    rows = []
    for (a, b), n in sorted(shared.items()):
        if b in analysed and b > a:
            continue  # the other side of an in-batch pair records it
        fa, fb = fps.get(a), fps.get(b)
        if fa is None or fb is None or b not in versions:
            continue
        if not math.isclose(fa.rate_hz, fb.rate_hz):
            continue
        if not shares_enough(n, fa.informative, fb.informative, MIN_SHARED):
            continue
        score, offset = best_alignment(fa, fb)
        if score >= threshold:
            rows.append(
                _pair_row((a, versions[a]), (b, versions[b]), score, round(offset / fa.rate_hz, 3))
            )
    return rows


def analyse_and_land(
    catalog: Catalog,
    store: ObjectStoreResource,
    partition_keys: Sequence[str],
    *,
    run_id: str,
    settings: AnalysisSettings,
    force: bool = False,
) -> tuple[list[str], AnalysisOutcome]:
    """The step's work without Dagster: analyse what needs it, land the rows and the index,
    find and land near-duplicate pairs, record failures. Returns (versions considered,
    outcome); whatever the outcome names is in the catalog already."""
    states = catalog.job_states(partition_keys)
    todo = versions_due(states, "analysis", run_id=run_id, force=force)
    # A SUCCEEDED version without an analysis of its current metadata (catalogued before the
    # analysis was on, or analysed again with force) is taken into this run first: its
    # outcome, FAILED included, is then recorded on it like any other version of the run.
    others = [pk for pk in todo if states[pk].status == SUCCEEDED]
    if others:
        taken = catalog.state.claim(others, run_id, force=True)
        todo = [pk for pk in todo if pk not in others or pk in taken]
    records = catalog.video_records(todo)
    outcome = AnalysisOutcome()

    def work(pk: str) -> tuple[str, ObjectVersion, AnalysisRecord] | AnalysisFailure:
        version, record = records[pk]
        try:
            return pk, version, _analyse_one(catalog, store, pk, version, record, settings)
        except PipelineError as exc:
            return AnalysisFailure(pk, version, exc.error_class, exc.reason)
        except Exception as exc:
            # Keep the type in the reason: the failure classifier reads it.
            return AnalysisFailure(pk, version, "unknown", f"{type(exc).__name__}: {exc}")

    keys = [pk for pk in todo if pk in records]
    for result in map_in_threads(work, keys, settings.workers):
        if isinstance(result, AnalysisFailure):
            outcome.failed.append(result)
        else:
            outcome.analysed.append(result)

    tables.land_analysis(catalog, outcome.analysed, run_id=run_id)
    with_fp = {
        pk: (version, rec.fingerprint)
        for pk, version, rec in outcome.analysed
        if rec.fingerprint is not None and rec.fingerprint.informative
    }
    outcome.pairs = find_near_duplicates(catalog, with_fp, threshold=settings.threshold)
    tables.land_pairs(catalog, outcome.pairs, run_id=run_id)
    catalog.state.mark_done("analysis", [pk for pk, _, _ in outcome.analysed])
    catalog.state.mark_failed(
        {f.partition_key: (f.error_class, f.reason) for f in outcome.failed}, run_id
    )
    return todo, outcome
