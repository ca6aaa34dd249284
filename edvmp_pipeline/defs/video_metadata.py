"""``video_metadata``: the asset of each version's ffprobe record (its spec and its events).

The asset is computed by the pipeline step (``defs/video_pipeline.py``) together with the
summary and the compliance checks; this module says what Dagster shows about it.
"""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord

METADATA_KEY = dg.AssetKey("video_metadata")

metadata_spec = dg.AssetSpec(
    METADATA_KEY,
    partitions_def=videos_partitions,
    group_name="videos",
    kinds={"ffprobe", "parquet"},
    # Skippable: the step reports one materialisation per good version itself, so a version
    # that fails is not materialised (and reads as Failed in the partitions view).
    skippable=True,
    description="Technical metadata of each video version (ffprobe, normalised), landed in "
    "the catalog's videos and streams tables.",
)


def record_metadata(record: VideoRecord) -> dict[str, str | int | float | None]:
    """The few fields an operator reads first on a version's materialisation."""
    return {
        "format": record.format_name,
        "duration_s": record.duration_s,
        "video": f"{record.video_codec} {record.width}x{record.height} @ {record.fps:.3f} fps"
        if record.fps
        else f"{record.video_codec} {record.width}x{record.height}",
        "rotation": record.rotation,
        "audio": f"{record.audio_codec} {record.audio_channels} ch {record.sample_rate_hz} Hz"
        if record.audio_codec
        else "none",
        "streams": f"{record.n_video_streams} video, {record.n_audio_streams} audio, "
        f"{record.n_subtitle_streams} subtitle",
    }


def metadata_materialization(
    pk: str,
    version: ObjectVersion,
    record: VideoRecord,
    failed_rules: list[str] | None,
    n_rules: int,
) -> dg.AssetMaterialization:
    """One good version's materialisation, with its compliance verdict when checked."""
    metadata: dict[str, dg.RawMetadataValue] = {
        "object_key": version.object_key,
        "etag": version.etag,
        "size_bytes": version.size_bytes,
        **record_metadata(record),
    }
    if failed_rules is not None and n_rules:
        metadata["compliance"] = f"{n_rules - len(failed_rules)} of {n_rules} rules passed" + (
            f"; failed: {', '.join(failed_rules)}" if failed_rules else ""
        )
        metadata["failed_rules"] = dg.MetadataValue.json(failed_rules)
    return dg.AssetMaterialization(asset_key=METADATA_KEY, partition=pk, metadata=metadata)
