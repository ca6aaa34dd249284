"""What ffprobe and ffmpeg may open when they read an upload: its own bytes, nothing else.

An upload is untrusted input. Some of ffmpeg's demuxers read *other* inputs named inside the
file (HLS and DASH playlists, concat lists, SDP, IMF), and ffmpeg's default protocols reach
the network and devices: a text playlist named ``clip.mp4`` would have ffprobe fetch any URL
from the pipeline host (request forgery, e.g. towards an instance metadata service) or read
files outside the source folder. So every run on an upload restricts

- the demuxers: all of this build's, except those that open other inputs and the capture
  devices (a computed allow-list, because ffmpeg has no deny-list option), and
- the protocols: ``file`` for a local path, http(s) (over tcp/tls) for a presigned URL.

A refused demuxer makes ffprobe fail with "Format not on whitelist", which
:func:`edvmp_pipeline.domain.probe_normalise.classify_probe_failure` reports as unsupported
media.
"""

from __future__ import annotations

import functools
import subprocess

# Demuxers that read inputs named by the data (or by the network), never the upload alone.
INDIRECT_DEMUXERS = frozenset(
    {
        "avisynth",  # scripts that open (and run) anything
        "concat",
        "dash",
        "hls",
        "imf",
        "lavfi",  # filter graphs, e.g. movie=/etc/…
        "rtp",
        "rtsp",
        "sap",
        "sdp",
        "vapoursynth",
        "webm_dash_manifest",
    }
)
LOCAL_PROTOCOLS = "file"
URL_PROTOCOLS = "http,https,tcp,tls"
_URL_SCHEMES = ("http://", "https://")


def is_url(target: str) -> bool:
    """True for the http(s) targets (presigned GET URLs) read over the network."""
    return target.lower().startswith(_URL_SCHEMES)


def demuxing_formats(listing: str) -> set[str]:
    """The names that can demux in ``-demuxers`` / ``-devices`` output.

    Rows look like `` D  mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV`` after a ``--`` line; a
    row names one format by several comma-separated names, each usable in an allow-list.
    """
    names: set[str] = set()
    rows = listing.splitlines()
    start = next((i + 1 for i, row in enumerate(rows) if row.strip() == "--"), len(rows))
    for row in rows[start:]:
        fields = row.split()
        if len(fields) >= 2 and "D" in fields[0]:
            names.update(n for n in fields[1].split(",") if n)
    return names


def allowed_demuxers(demuxers: str, devices: str) -> list[str]:
    """The allow-list: every demuxer of ``demuxers`` that is neither indirect nor a device."""
    refused = INDIRECT_DEMUXERS | demuxing_formats(devices)
    return sorted(demuxing_formats(demuxers) - refused)


def _listing(tool_path: str, what: str) -> str:
    done = subprocess.run(
        [tool_path, "-hide_banner", what],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.stdout.decode("utf-8", errors="replace") if done.returncode == 0 else ""


@functools.cache
def demuxer_allow_list(tool_path: str) -> str | None:
    """The ``-format_whitelist`` value for ``tool_path`` (read once per process), or None
    when the tool cannot list its formats; the real run then reports why it cannot run."""
    try:
        names = allowed_demuxers(_listing(tool_path, "-demuxers"), _listing(tool_path, "-devices"))
    except (OSError, subprocess.SubprocessError):
        return None
    return ",".join(names) or None


def input_options(tool_path: str, target: str) -> list[str]:
    """The input options that confine ``tool_path`` to reading ``target`` itself."""
    options = ["-protocol_whitelist", URL_PROTOCOLS if is_url(target) else LOCAL_PROTOCOLS]
    allow = demuxer_allow_list(tool_path)
    if allow is not None:
        options += ["-format_whitelist", allow]
    return options
