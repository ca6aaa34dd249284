"""Partition keys for hostile object keys: valid in Dagster, unique, stable, readable."""

import pytest
from dagster._core.definitions.partitions.utils.base import (
    raise_error_on_invalid_partition_key_substring,
)

from edvmp_pipeline.domain.partition_keys import SLUG_MAX, is_valid_partition_key, partition_key_for

HOSTILE_KEYS = [
    "plain.mp4",
    "folder/sub folder/clip with spaces.mp4",
    "a,b,c[1].mp4",
    "../../etc/passwd",
    "..." + "/x.mp4",
    "日本語/ビデオ 1.mp4",
    "emoji 🎬 clip.mov",
    "tab\tnew\nline\x00nul\x07bell.mp4",
    "x" * 1000 + ".mp4",
    "/leading/slash.mp4",
    "trailing/",
    "",
    "%2F encoded %20 chars?.mp4",
    "Clip.MP4",
    "clip.mp4",
]

FORBIDDEN = [",", "[", "]", " ", "/", "\\", "...", "\n", "\t", "\x00", "\x07"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_key_is_valid_everywhere_dagster_looks(key: str) -> None:
    pk = partition_key_for("s3://uploads", key, "d41d8cd98f00b204e9800998ecf8427e-12")
    raise_error_on_invalid_partition_key_substring([pk])
    for bad in FORBIDDEN:
        assert bad not in pk, (bad, pk)
    assert is_valid_partition_key(pk)
    assert len(pk) <= SLUG_MAX + 2 + 8 + 16


def test_unique_per_source_key_and_etag_including_case() -> None:
    keys = {
        partition_key_for(src, key, etag)
        for src in ("s3://a", "s3://b", "/srv/videos")
        for key in HOSTILE_KEYS
        for etag in ("e1", "e2")
    }
    assert len(keys) == 3 * len(HOSTILE_KEYS) * 2
    # Keys differing only in case stay distinct even on a case-insensitive file system.
    lower = {k.lower() for k in keys}
    assert len(lower) == len(keys)


def test_stable_and_readable() -> None:
    a = partition_key_for("s3://uploads", "marketing/launch teaser.mp4", '"abc123"'.strip('"'))
    assert a == partition_key_for("s3://uploads", "marketing/launch teaser.mp4", "abc123")
    assert a.startswith("marketing_launch_teaser.mp4~abc123~")
    jp = partition_key_for("s3://uploads", "日本語/ビデオ.mp4", "e")
    assert jp.startswith("日本語_ビデオ.mp4~")
    long = partition_key_for("s3://uploads", "dir/" + "y" * 1000 + "-final.mp4", "e")
    assert "-final.mp4~" in long


def test_multipart_etag_is_opaque() -> None:
    pk = partition_key_for("s3://uploads", "big.mp4", "9b2cf535f27731c974343645a3985328-5")
    assert "~9b2cf535~" in pk
    assert pk != partition_key_for("s3://uploads", "big.mp4", "9b2cf535f27731c974343645a3985328-6")
