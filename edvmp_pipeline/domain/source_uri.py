"""Parsing a SOURCE argument: a local folder or ``s3://bucket[/prefix]``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edvmp_pipeline.domain.errors import ConfigError

# S3's own bucket naming rules (3-63 chars, lowercase, digits, dots, hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_bucket_name(name: str) -> bool:
    """Whether ``name`` follows S3's bucket naming rules."""
    return bool(_BUCKET.match(name))


@dataclass(frozen=True)
class SourceSpec:
    """Where objects come from. ``source`` is the catalog's ``source`` column value."""

    kind: str  # "folder" | "s3"
    source: str
    folder: Path | None = None
    bucket: str | None = None
    prefix: str = ""


def parse_source(text: str) -> SourceSpec:
    """Parse ``text`` into a :class:`SourceSpec`; ConfigError with a clear reason if invalid."""
    if not text.strip():
        # Path("") is the current folder: an empty variable in a script must not ingest it.
        raise ConfigError("empty source: give a folder path or s3://bucket/prefix")
    if text.startswith("s3://"):
        rest = text[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not is_bucket_name(bucket):
            raise ConfigError(f"invalid bucket name {bucket!r} in {text!r}")
        return SourceSpec(kind="s3", source=f"s3://{bucket}", bucket=bucket, prefix=prefix)
    if "://" in text:
        raise ConfigError(f"unsupported source {text!r}: use a folder path or s3://bucket/prefix")
    folder = Path(text).expanduser().resolve()
    if not folder.exists():
        raise ConfigError(f"no such folder: {text}")
    if not folder.is_dir():
        raise ConfigError(f"not a folder: {text}")
    return SourceSpec(kind="folder", source=str(folder), folder=folder)
