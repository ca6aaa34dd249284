"""``video_analysis``: the opt-in asset of each version's decoded analysis (spec and events).

Only in the code location with ``EDVMP_ANALYSIS=on``: it decodes every video once (about a
tenth to a third of its running time on two cores, see the README), so a library that does
not want it does not see an asset that never materialises. Computed by the pipeline step
(``defs/video_pipeline.py``) after the metadata and before the compliance checks, which may
name its fields.
"""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.video_metadata import METADATA_KEY
from edvmp_pipeline.domain.media_analysis import AnalysisRecord
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.analysis import AnalysisSettings
from edvmp_pipeline.settings import (
    analysis_enabled,
    analysis_images,
    env_float,
    env_int,
    probe_workers_default,
)

ANALYSIS_KEY = dg.AssetKey("video_analysis")

analysis_spec = dg.AssetSpec(
    ANALYSIS_KEY,
    deps=[METADATA_KEY],
    partitions_def=videos_partitions,
    group_name="videos",
    kinds={"ffmpeg", "parquet"},
    skippable=True,
    description="One decode of each video version: EBU R128 loudness, black and frozen "
    "segments, scene cuts, interlacing, HDR class, a perceptual fingerprint and a poster; "
    "landed in the catalog's analysis table, with near-duplicates in near_duplicates.",
)


def analysis_settings_from_env() -> AnalysisSettings | None:
    """The analysis settings when ``EDVMP_ANALYSIS=on``, else None (no asset)."""
    if not analysis_enabled():
        return None
    return AnalysisSettings(
        timeout_s=env_float("EDVMP_ANALYSIS_TIMEOUT_S", 900.0),
        images=analysis_images(),
        # ffmpeg decodes with several threads already: half the cores by default.
        workers=env_int("EDVMP_ANALYSIS_WORKERS", max(1, probe_workers_default() // 2)),
    )


def _seconds(values: tuple[float, ...] | list[float], limit: int = 20) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return shown + (f" … ({len(values)} in all)" if len(values) > limit else "")


def analysis_materialization(
    pk: str, version: ObjectVersion, record: AnalysisRecord, duplicates: list[str]
) -> dg.AssetMaterialization:
    """One version's analysis materialisation: the figures an operator reads first."""
    metadata: dict[str, dg.RawMetadataValue] = {"object_key": version.object_key}
    if record.loudness:
        first = record.loudness[0]
        metadata["loudness"] = (
            f"{first.integrated_lufs} LUFS, LRA {first.loudness_range_lu} LU, "
            f"true peak {first.true_peak_dbtp} dBTP"
        )
    else:
        metadata["loudness"] = "no audio"
    if record.video_stream_index is not None:
        metadata["hdr_class"] = record.hdr_class or "unknown"
        metadata["interlace"] = record.interlace.verdict if record.interlace else "unknown"
        metadata["black"] = (
            f"leading {record.leading_black_s} s, trailing {record.trailing_black_s} s, "
            f"{len(record.black_segments)} segments"
        )
        metadata["frozen_segments"] = len(record.freeze_segments)
        metadata["scene_cuts"] = (
            f"{record.scene_cut_count}: {_seconds(record.scene_cuts)}" if record.scene_cuts else "0"
        )
    if record.poster:
        metadata["poster"] = (
            dg.MetadataValue.path(record.poster)
            if not record.poster.startswith("s3://")
            else dg.MetadataValue.url(record.poster)
        )
    if duplicates:
        metadata["near_duplicate_of"] = dg.MetadataValue.json(duplicates)
    if record.elapsed_s is not None:
        metadata["decode_s"] = record.elapsed_s
    return dg.AssetMaterialization(asset_key=ANALYSIS_KEY, partition=pk, metadata=metadata)
