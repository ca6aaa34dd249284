"""The ffprobe resource: run ffprobe on a local path or a presigned URL, return a VideoRecord.

Thin on purpose: building the command line, running it with a timeout and mapping process
failures to pipeline errors happen here; every decision about the media itself lives in
:mod:`edvmp_pipeline.domain.probe_normalise`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import dagster as dg

from edvmp_pipeline.adapters.ffmpeg_inputs import input_options, is_url
from edvmp_pipeline.adapters.object_store import open_range_reader
from edvmp_pipeline.domain.errors import ConfigError, PipelineError, ProbeTimeout
from edvmp_pipeline.domain.probe_normalise import (
    classify_probe_failure,
    classify_transport_failure,
    ffprobe_messages,
    normalise_probe,
)
from edvmp_pipeline.domain.records import VideoRecord

LEADING_BYTES = 64


def read_leading_bytes(path: str | os.PathLike[str], n: int = LEADING_BYTES) -> bytes:
    """The first ``n`` bytes of a regular file; ``b""`` for anything else or on error.

    Only regular files are read: opening a FIFO or a device could block forever, which is
    exactly what the ffprobe timeout exists to bound.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError:
        return b""


class FfprobeProber(dg.ConfigurableResource):
    """Probes one object with ffprobe and normalises the answer.

    ``timeout_s`` bounds the whole ffprobe process; ``rw_timeout_s`` bounds each network
    read when the target is a URL, so a stalled store fails fast with a retryable error
    instead of using the whole timeout.
    """

    ffprobe_path: str = "ffprobe"
    timeout_s: float = 60.0
    rw_timeout_s: float = 15.0

    def command(self, target: str) -> list[str]:
        """The ffprobe argument list for ``target`` (no shell is ever involved)."""
        cmd = [
            self.ffprobe_path,
            "-v", "error",
            "-print_format", "json",
            "-show_format", "-show_streams",
            *input_options(self.ffprobe_path, target),
        ]  # fmt: skip
        if is_url(target):
            cmd += ["-rw_timeout", str(int(self.rw_timeout_s * 1_000_000))]
            source = target
        else:
            # "file:" stops ffmpeg reading "a:b.mp4" as protocol "a", and "-i" stops a
            # leading "-" being read as an option: object keys can contain both.
            source = "file:" + os.fspath(Path(target))
        return [*cmd, "-i", source]

    def probe(self, target: str, *, size_bytes: int, leading_bytes: bytes = b"") -> VideoRecord:
        """Probe ``target`` (a local path or an http(s) URL) and return its VideoRecord.

        ``size_bytes`` is the object's size from the store and ``leading_bytes`` its first
        bytes (read here for local files when not given). The container structure is
        checked against ``size_bytes`` with a few small range reads of the same target, so
        a file cut after its index (which ffprobe reads "fine") is rejected too.

        Raises :class:`MediaRejected` for unusable media, :class:`ProbeTimeout` when ffprobe
        overruns ``timeout_s``, :class:`ConfigError` when ffprobe cannot be run, and the
        store errors (:class:`ObjectMissing`, :class:`AccessDenied`,
        :class:`StoreUnreachable`) that ffprobe or the range reads meet while reading.
        """
        if size_bytes == 0:
            # Nothing to probe; ffprobe would only say "Invalid data" (or HTTP 416).
            return normalise_probe({}, size_bytes=0)
        if not leading_bytes and not is_url(target):
            leading_bytes = read_leading_bytes(target)
        try:
            done = subprocess.run(
                self.command(target),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # subprocess.run has already killed and reaped ffprobe at this point.
            raise ProbeTimeout(
                f"probe timeout: ffprobe did not finish in {self.timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot run ffprobe ({self.ffprobe_path!r}): {exc.strerror or exc}; install "
                "ffmpeg (e.g. apt-get install ffmpeg) or set the prober's ffprobe_path"
            ) from None
        stderr = done.stderr.decode("utf-8", errors="replace")
        if done.returncode < 0:
            raise PipelineError(
                f"ffprobe killed by signal {-done.returncode} ({ffprobe_messages(stderr)})"
            )
        if done.returncode != 0:
            transport = classify_transport_failure(stderr)
            if transport is not None:
                raise transport
            with open_range_reader(target, timeout_s=self.rw_timeout_s) as read:
                raise classify_probe_failure(
                    stderr, size_bytes=size_bytes, leading_bytes=leading_bytes, read=read
                )
        try:
            probe = json.loads(done.stdout.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            raise PipelineError(f"ffprobe printed invalid JSON: {exc}") from None
        with open_range_reader(target, timeout_s=self.rw_timeout_s) as read:
            return normalise_probe(
                probe, size_bytes=size_bytes, leading_bytes=leading_bytes, read=read
            )
