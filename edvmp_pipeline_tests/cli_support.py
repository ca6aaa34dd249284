"""Helpers for tests that go through the installed console script and the catalog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edvmp_pipeline.catalog.store import Catalog

# What the sample library (edvmp samples / the `library` fixture) must give, spelled out here
# rather than derived from the generator, so a generator change cannot quietly pass.
SAMPLE_GOOD = frozenset(
    {
        "marketing/launch_teaser.mp4",
        "training/ntsc_lecture.mov",
        "training/silent_screencast.mkv",
        "ugc/clip vp9, opus.webm",
        "ugc/phone_portrait.mp4",
    }
)
SAMPLE_BROKEN = {
    "broken/upload_cut_short.mp4": "corrupt_media",
    "broken/empty_upload.mp4": "empty_object",
}


def run_edvmp(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the ``edvmp`` console script of this virtualenv."""
    exe = Path(sys.executable).with_name("edvmp")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def catalog_at(home: Path) -> Catalog:
    """The catalog of an ``EDVMP_HOME``."""
    return Catalog(home / "catalog")
