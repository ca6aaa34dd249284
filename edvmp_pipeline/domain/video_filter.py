"""Which objects count as videos for event-driven ingestion.

Choice (documented in the README): an object whose extension is not a video extension is
skipped with a logged reason; a zero-byte object *with* a video extension is processed and
fails as ``empty_object``, because an empty upload of ``clip.mp4`` is a broken upload someone
should hear about, while ``notes.txt`` in the bucket is simply not our business.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

DEFAULT_VIDEO_EXTENSIONS = frozenset(
    "mp4 m4v mov qt mkv webm avi mpg mpeg ts mts m2ts wmv flv 3gp 3g2 ogv mxf".split()  # noqa: SIM905
)


def parse_extensions(text: str | None) -> frozenset[str]:
    """``"mp4, .MOV"`` → ``{"mp4", "mov"}``; empty or None → the defaults; ``*`` → accept all."""
    if not text or not text.strip():
        return DEFAULT_VIDEO_EXTENSIONS
    items = {e.strip().lstrip(".").lower() for e in text.split(",")}
    return frozenset(e for e in items if e)


def skip_reason(object_key: str, extensions: Iterable[str]) -> str | None:
    """Why ``object_key`` is not a video to process, or None when it is."""
    exts = frozenset(extensions)
    if object_key.endswith("/"):
        return "folder marker"
    if "*" in exts:
        return None
    suffix = PurePosixPath(object_key).suffix.lower().lstrip(".")
    if not suffix:
        return "no file extension"
    if suffix not in exts:
        return f"not a video extension (.{suffix})"
    return None
