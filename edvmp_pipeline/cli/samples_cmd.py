"""``edvmp samples DIR``: generate the sample library."""

from __future__ import annotations

import argparse
from pathlib import Path

from edvmp_pipeline.devtools.sample_media import generate_samples


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``samples`` sub-command."""
    p = sub.add_parser(
        "samples",
        help="generate small sample videos (and two broken files)",
        description="Write a small sample library with ffmpeg: five good videos under ugc/, "
        "marketing/ and training/, and two broken files under broken/ (an empty upload and "
        "one cut short), for trying edvmp ingest.",
    )
    p.add_argument("folder", type=Path, help="where to write them (created when missing)")
    p.add_argument("--no-broken", action="store_true", help="only the good videos")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the files and list them."""
    for path in generate_samples(args.folder, broken=not args.no_broken):
        print(path)
    return 0
