"""What one decode pass says about a video: loudness, black, freezes, cuts, interlacing, HDR.

Pure functions: no subprocess, no Dagster. :func:`filter_graph` builds the ``ffmpeg
-filter_complex`` text for one pass; the ``parse_*`` functions read the lines ffmpeg 5.1's
filters print on stderr (samples in the tests were captured from this host's ffmpeg);
:func:`build_record` assembles an :class:`AnalysisRecord`. The adapter
(:mod:`edvmp_pipeline.adapters.analyzer`) only runs ffmpeg.

Conventions:

* Times are seconds from the start of the file as ffmpeg's filters see it (ffmpeg shifts
  input timestamps to start at 0 unless ``-copyts``).
* Loudness follows EBU R128 / ITU-R BS.1770 as implemented by ffmpeg's ``ebur128`` filter:
  integrated loudness in LUFS, loudness range in LU, true peak in dBTP (ffmpeg prints
  "dBFS" for the oversampled peak). ``-70`` LUFS is the absolute gate: silence reads -70.0.
  A true peak of ``-inf`` (digital silence) is stored as ``None``. The loudness range needs
  several 3 s short-term windows: ffmpeg 5.1 reports about 20 LU for a steady tone shorter
  than ~10 s, so do not read LRA on very short clips.
* ffmpeg may configure a filter graph twice (once before the first frame, again when the
  real frame format is known) and the first instance prints an empty summary: for each
  named filter instance the last summary printed wins.
* A black or frozen segment still open at the end of the file (freezedetect prints no
  ``freeze_end`` then) is closed at ``duration_s``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from edvmp_pipeline.domain.fingerprints import THUMB_H, THUMB_W, Fingerprint

SDR, HDR10, HLG, DOLBY_VISION = "SDR", "HDR10", "HLG", "DolbyVision"
INTERLACE_VERDICTS = ("progressive", "tff", "bff", "undetermined")


# --------------------------------------------------------------------------- records


class Segment(NamedTuple):
    """A stretch of black or frozen picture, in seconds."""

    start_s: float
    end_s: float
    duration_s: float


@dataclass(frozen=True)
class Loudness:
    """EBU R128 figures of one audio stream (``stream_index`` is ffprobe's index)."""

    stream_index: int
    integrated_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbtp: float | None


@dataclass(frozen=True)
class Interlace:
    """idet's multi-frame verdict and counts over the whole video stream."""

    verdict: str  # one of INTERLACE_VERDICTS
    tff: int = 0
    bff: int = 0
    progressive: int = 0
    undetermined: int = 0


@dataclass(frozen=True)
class AnalysisParams:
    """Detector thresholds (ffmpeg filter options) and the fingerprint sampling rate."""

    black_min_s: float = 0.1  # blackdetect d
    black_pixel_th: float = 0.10  # blackdetect pix_th: luma below this fraction is black
    black_picture_th: float = 0.98  # blackdetect pic_th: fraction of black pixels
    freeze_noise_db: float = -60.0  # freezedetect n
    freeze_min_s: float = 0.5  # freezedetect d
    scene_threshold: float = 10.0  # scdet threshold (0-100)
    # idet intl_thres. ffmpeg's default 1.04 called synthetic progressive video (testsrc2,
    # mandelbrot at 160x120-320x240) TFF/BFF on this host; 1.2 left the progressive samples
    # of the tests progressive/undetermined and every woven tff/bff sample 49-50 of 50
    # correct. Not every one: a 2 s 160x120 testsrc2 still reads tff (idet's multi-frame
    # count carries one early single-frame call forward), so read it on real footage.
    interlace_threshold: float = 1.2
    fingerprint_fps: float = 1.0
    # The poster is the first frame at or after this fraction of the duration: past the
    # usual black or slate opening, well before the end credits.
    poster_at: float = 0.25
    poster_width: int = 320
    sheet_columns: int = 4
    sheet_rows: int = 3
    sheet_tile_width: int = 160


POSTER, CONTACT_SHEET = "poster", "contact_sheet"
IMAGE_KINDS = (POSTER, CONTACT_SHEET)


class FilterGraph(NamedTuple):
    """One pass's ``-filter_complex`` text and the labels to map: detector branches to
    ``-f null``, the fingerprint branch to raw frames, each image branch to one JPEG."""

    graph: str
    null_outputs: list[str]
    fingerprint_output: str | None
    image_outputs: dict[str, str]  # image kind -> label


@dataclass(frozen=True)
class AnalysisRecord:
    """The analysis of one video version.

    Video fields are ``None`` (or empty) when the file has no video stream, and
    ``loudness`` is empty when it has no audio. ``hdr_class`` is one of ``SDR``,
    ``HDR10``, ``HLG``, ``DolbyVision``.
    """

    duration_s: float | None
    video_stream_index: int | None
    loudness: tuple[Loudness, ...] = ()
    black_segments: tuple[Segment, ...] = ()
    leading_black_s: float | None = None
    trailing_black_s: float | None = None
    freeze_segments: tuple[Segment, ...] = ()
    scene_cut_count: int = 0
    scene_cuts: tuple[float, ...] = ()
    interlace: Interlace | None = None
    hdr_class: str | None = None
    fingerprint: Fingerprint | None = None
    decode_errors: int = 0
    elapsed_s: float | None = field(default=None, compare=False)
    poster: str | None = None
    """Where the poster frame (JPEG) is: a local path from the analyzer, the catalog's
    location of it once stored."""
    contact_sheet: str | None = None
    """Where the contact sheet (JPEG grid of frames over the duration) is, when made."""

    @property
    def integrated_lufs(self) -> float | None:
        """The first audio stream's integrated loudness (the one policies usually mean)."""
        return self.loudness[0].integrated_lufs if self.loudness else None

    def as_row(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict (one catalog row; nested values as lists/dicts)."""
        fp = self.fingerprint
        first = self.loudness[0] if self.loudness else None
        return {
            "duration_s": self.duration_s,
            "video_stream_index": self.video_stream_index,
            "integrated_lufs": first.integrated_lufs if first else None,
            "loudness_range_lu": first.loudness_range_lu if first else None,
            "true_peak_dbtp": first.true_peak_dbtp if first else None,
            "loudness": [asdict(x) for x in self.loudness],
            "black_segments": [s._asdict() for s in self.black_segments],
            "black_total_s": round(sum(s.duration_s for s in self.black_segments), 3),
            "leading_black_s": self.leading_black_s,
            "trailing_black_s": self.trailing_black_s,
            "freeze_segments": [s._asdict() for s in self.freeze_segments],
            "freeze_total_s": round(sum(s.duration_s for s in self.freeze_segments), 3),
            "scene_cut_count": self.scene_cut_count,
            "scene_cuts": list(self.scene_cuts),
            "interlace": self.interlace.verdict if self.interlace else None,
            "interlace_counts": asdict(self.interlace) if self.interlace else None,
            "hdr_class": self.hdr_class,
            # The hashes themselves live in the state store (read by key for matching).
            "fingerprint_frames": len(fp) if fp else None,
            "decode_errors": self.decode_errors,
            "elapsed_s": self.elapsed_s,
            "poster": self.poster,
            "contact_sheet": self.contact_sheet,
        }


# --------------------------------------------------------------------------- HDR class

_DOVI_SIDE_DATA = "DOVI configuration record"
_DOVI_CODEC_TAGS = frozenset({"dvh1", "dvhe", "dva1", "dvav", "dav1"})


def hdr_class(
    color_transfer: str | None,
    color_primaries: str | None = None,
    side_data_types: Sequence[str] = (),
    codec_tag: str | None = None,
) -> str:
    """SDR / HDR10 / HLG / DolbyVision from ffprobe's stream fields.

    Dolby Vision wins when the stream carries a DOVI configuration record (ffprobe side
    data ``"DOVI configuration record"``) or a Dolby Vision codec tag (``dvh1``...); then a
    PQ transfer (``smpte2084``) is HDR10 and ``arib-std-b67`` is HLG. The transfer decides,
    not the primaries: PQ with BT.709 primaries is still mastered for an HDR display.
    ``color_primaries`` is accepted for the record but does not change the class.
    """
    del color_primaries  # the transfer function alone separates SDR from HDR
    if (
        any(t == _DOVI_SIDE_DATA for t in side_data_types)
        or (codec_tag or "").lower() in _DOVI_CODEC_TAGS
    ):
        return DOLBY_VISION
    trc = (color_transfer or "").lower()
    if trc == "smpte2084":
        return HDR10
    if trc == "arib-std-b67":
        return HLG
    return SDR


def hdr_class_of_stream(stream: Mapping[str, Any]) -> str:
    """:func:`hdr_class` of one ffprobe ``-show_streams`` JSON stream object."""
    side = [str(s.get("side_data_type", "")) for s in stream.get("side_data_list") or []]
    return hdr_class(
        stream.get("color_transfer"),
        stream.get("color_primaries"),
        side,
        stream.get("codec_tag_string"),
    )


# --------------------------------------------------------------------------- stream choice


def pick_streams(probe: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, list[int]]:
    """The video stream to analyse (first non cover-art video) and all audio stream indices,
    from ffprobe's JSON (``{"streams": [...], "format": {...}}``); streams ffprobe names no
    codec for are left out."""
    video = None
    audio = []
    for s in probe.get("streams") or []:
        kind = s.get("codec_type")
        if s.get("codec_name") in (None, "", "none"):
            # No decoder for it (an unknown codec id): analysing it would fail the whole
            # pass, so the streams that can be decoded are analysed without it.
            continue
        if (
            kind == "video"
            and video is None
            and not (s.get("disposition") or {}).get("attached_pic")
        ):
            video = s
        elif kind == "audio":
            audio.append(int(s["index"]))
    return video, audio


def probe_duration(probe: Mapping[str, Any], video: Mapping[str, Any] | None) -> float | None:
    """The video stream's duration, else the container's, from ffprobe's JSON."""
    for value in ((video or {}).get("duration"), (probe.get("format") or {}).get("duration")):
        d = _num(value)
        if d is not None and d > 0:
            return d
    return None


# --------------------------------------------------------------------------- filter graph


def _opt(x: float) -> str:
    return f"{x:g}"


def _image_branches(
    params: AnalysisParams, images: Sequence[str], duration_s: float | None
) -> tuple[list[str], dict[str, str]]:
    """Filter branches (fed by labels ``[vi_<kind>]``) and output labels of the images."""
    p = params
    parts, outs = [], {}
    for kind in images:
        if kind == POSTER:
            # A clip under 2 s may hold a frame or two: take its first, or there is none.
            at = (duration_s or 0.0) * p.poster_at if (duration_s or 0.0) >= 2.0 else 0.0
            # select passes the frames from `at` on; trim keeps the first and ends the branch
            # (nothing more is scaled for it: the poster costs one frame).
            parts.append(
                f"[vi_{kind}]select='gte(t,{_opt(round(at, 3))})',trim=end_frame=1,"
                f"scale={p.poster_width}:-2,setsar=1[img_{kind}]"
            )
        elif kind == CONTACT_SHEET:
            tiles = p.sheet_columns * p.sheet_rows
            # `tiles` frames spread evenly over the duration (one per second when unknown);
            # tile= flushes a partly filled sheet at the end of a short file.
            rate = tiles / duration_s if duration_s else 1.0
            parts.append(
                f"[vi_{kind}]fps={rate:.6g}:eof_action=pass,"
                f"scale={p.sheet_tile_width}:-2,setsar=1,"
                f"tile={p.sheet_columns}x{p.sheet_rows}:padding=2:margin=2[img_{kind}]"
            )
        else:
            raise ValueError(f"unknown image kind {kind!r} (kinds: {', '.join(IMAGE_KINDS)})")
        outs[kind] = f"img_{kind}"
    return parts, outs


def filter_graph(
    video_index: int | None,
    audio_indices: Sequence[int],
    params: AnalysisParams,
    *,
    images: Sequence[str] = (),
    duration_s: float | None = None,
) -> FilterGraph:
    """The ``ffmpeg -filter_complex`` text of one analysis pass and its output labels.

    The video branch runs blackdetect, freezedetect, scdet and idet (``idet@video``) on
    input stream ``video_index`` and splits off a ``fps``-sampled 9x8 grayscale copy
    labelled ``[fp]`` for the fingerprint, and one copy per requested image (``poster``:
    one frame at ``poster_at`` of ``duration_s``; ``contact_sheet``: a grid of frames spread
    over it). Each audio stream ``i`` gets ``ebur128@a<i>=peak=true`` (per-frame log at
    verbose level, so only the summary is printed).
    """
    parts: list[str] = []
    outs: list[str] = []
    fp_out = None
    image_outs: dict[str, str] = {}
    p = params
    if video_index is not None:
        wanted = [k for k in IMAGE_KINDS if k in images]
        copies = "".join(f"[vi_{k}]" for k in wanted)
        parts.append(
            f"[0:{video_index}]split={2 + len(wanted)}[vd][vf]{copies};"
            f"[vd]blackdetect=d={_opt(p.black_min_s)}:pix_th={_opt(p.black_pixel_th)}"
            f":pic_th={_opt(p.black_picture_th)},"
            f"freezedetect=n={_opt(p.freeze_noise_db)}dB:d={_opt(p.freeze_min_s)},"
            f"scdet=threshold={_opt(p.scene_threshold)},"
            f"idet@video=intl_thres={_opt(p.interlace_threshold)}[vo];"
            # eof_action=pass: a clip shorter than one sampling period still gives a frame.
            f"[vf]fps={_opt(p.fingerprint_fps)}:eof_action=pass,"
            f"scale={THUMB_W}:{THUMB_H}:flags=area,format=gray[fp]"
        )
        outs.append("vo")
        fp_out = "fp"
        branches, image_outs = _image_branches(p, wanted, duration_s)
        parts += branches
    for i in audio_indices:
        parts.append(f"[0:{i}]ebur128@a{i}=peak=true:framelog=verbose[ao{i}]")
        outs.append(f"ao{i}")
    return FilterGraph(";".join(parts), outs, fp_out, image_outs)


# --------------------------------------------------------------------------- parsers

_NUM = r"(-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|-?inf|nan|N/A)"


def _num(value: Any) -> float | None:
    """A finite float, or None (``N/A``, ``inf``, garbage)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


_EBUR_HEAD = re.compile(r"^\[(?P<name>ebur128[^\s\]]*) @ [^\]]*\] Summary:", re.M)
_EBUR_I = re.compile(r"^\s*I:\s*" + _NUM + r"\s*LUFS", re.M)
_EBUR_LRA = re.compile(r"^\s*LRA:\s*" + _NUM + r"\s*LU\b", re.M)
_EBUR_PEAK = re.compile(r"^\s*Peak:\s*" + _NUM + r"\s*dB", re.M)


def parse_ebur128(stderr: str) -> dict[str, tuple[float | None, float | None, float | None]]:
    """Filter instance name (``ebur128@a1``) → ``(integrated LUFS, LRA LU, true peak dB)``.

    Reads the ``Summary:`` block each instance prints when it is freed; the last one per
    name wins (see module notes).
    """
    out: dict[str, tuple[float | None, float | None, float | None]] = {}
    heads = list(_EBUR_HEAD.finditer(stderr))
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(stderr)
        block = stderr[head.end() : end]
        # The block ends at the first line that is neither blank nor indented.
        lines = []
        for line in block.splitlines()[1:]:
            if line and not line[0].isspace():
                break
            lines.append(line)
        text = "\n".join(lines)
        values = []
        for rx in (_EBUR_I, _EBUR_LRA, _EBUR_PEAK):
            m = rx.search(text)
            values.append(_num(m.group(1)) if m else None)
        out[head.group("name")] = (values[0], values[1], values[2])
    return out


def loudness_of(stderr: str, audio_indices: Sequence[int]) -> tuple[Loudness, ...]:
    """One :class:`Loudness` per audio stream (``None`` figures if no summary was printed)."""
    summaries = parse_ebur128(stderr)
    result = []
    for i in audio_indices:
        il, lra, peak = summaries.get(f"ebur128@a{i}", (None, None, None))
        result.append(Loudness(i, il, lra, peak))
    return tuple(result)


_BLACK = re.compile(
    r"black_start:\s*" + _NUM + r"\s+black_end:\s*" + _NUM + r"\s+black_duration:\s*" + _NUM
)


def parse_black(stderr: str) -> tuple[Segment, ...]:
    """blackdetect's ``black_start:S black_end:E black_duration:D`` lines, in order."""
    segs = []
    for m in _BLACK.finditer(stderr):
        start, end, dur = (_num(g) for g in m.groups())
        if start is None or end is None:
            continue
        segs.append(Segment(start, end, dur if dur is not None else end - start))
    return tuple(segs)


_FREEZE = re.compile(r"lavfi\.freezedetect\.freeze_(start|end):\s*" + _NUM)


def parse_freeze(stderr: str, duration_s: float | None = None) -> tuple[Segment, ...]:
    """freezedetect's ``lavfi.freezedetect.freeze_start: S`` / ``freeze_end: E`` pairs.

    A start with no end (frozen to the last frame) closes at ``duration_s`` when known and
    is dropped otherwise.
    """
    segs = []
    start: float | None = None
    for m in _FREEZE.finditer(stderr):
        value = _num(m.group(2))
        if value is None:
            continue
        if m.group(1) == "start":
            start = value
        elif start is not None:
            segs.append(Segment(start, value, value - start))
            start = None
    if start is not None and duration_s is not None and duration_s > start:
        segs.append(Segment(start, duration_s, duration_s - start))
    return tuple(segs)


_SCENE = re.compile(r"lavfi\.scd\.score:\s*" + _NUM + r",\s*lavfi\.scd\.time:\s*" + _NUM)


def parse_scene_cuts(stderr: str) -> tuple[float, ...]:
    """scdet's ``lavfi.scd.score: X, lavfi.scd.time: T`` lines → cut times, sorted."""
    times = {t for m in _SCENE.finditer(stderr) if (t := _num(m.group(2))) is not None}
    return tuple(sorted(times))


_IDET = re.compile(
    r"^\[(?P<name>idet[^\s\]]*) @ [^\]]*\] Multi frame detection:\s*TFF:\s*(\d+)\s*"
    r"BFF:\s*(\d+)\s*Progressive:\s*(\d+)\s*Undetermined:\s*(\d+)",
    re.M,
)


def interlace_verdict(tff: int, bff: int, progressive: int, undetermined: int = 0) -> str:
    """The majority of idet's decided frames, when it has at least twice the votes of the
    runner-up; ``undetermined`` otherwise (nothing decided, or a split vote: real
    interlaced video has one field order, a TFF/BFF mix means idet is guessing)."""
    del undetermined  # undecided frames do not vote
    votes = sorted([(progressive, "progressive"), (tff, "tff"), (bff, "bff")], reverse=True)
    if votes[0][0] == 0 or votes[0][0] < 2 * votes[1][0]:
        return "undetermined"
    return votes[0][1]


def parse_idet(stderr: str, name: str = "idet@video") -> Interlace | None:
    """idet's last ``Multi frame detection`` line for instance ``name`` (None if absent)."""
    last = None
    for m in _IDET.finditer(stderr):
        if m.group("name") == name:
            last = m
    if last is None:
        return None
    tff, bff, prog, und = (int(last.group(k)) for k in range(2, 6))
    return Interlace(interlace_verdict(tff, bff, prog, und), tff, bff, prog, und)


_DECODE_ERROR = re.compile(
    r"error while decoding|Invalid NAL|concealing \d+|corrupt|Error splitting|"
    r"Invalid data found",
    re.I,
)


def count_decode_errors(stderr: str) -> int:
    """Lines where a decoder or demuxer complained (damaged but still decodable input).

    Only lines a component printed (``[h264 @ 0x…] …``) count: ffmpeg's own listing of the
    input (its path, its metadata such as a title) is free text and must not."""
    return sum(
        1
        for line in stderr.splitlines()
        if (m := _PREFIX.match(line)) is not None and _DECODE_ERROR.search(line[m.end() :])
    )


_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def ffmpeg_error_line(stderr: str, limit: int = 200) -> str:
    """One line saying why ffmpeg failed: its last error-looking line, without the
    ``[ctx @ 0x…]`` prefix or the input path; the last non-empty line otherwise."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    pick = None
    for ln in reversed(lines):
        if re.search(r"error|invalid|not found|failed|no such|unable|cannot", ln, re.I):
            pick = ln
            break
    if pick is None:
        pick = lines[-1] if lines else "no message"
    pick = _PREFIX.sub("", pick)
    if ": " in pick and ("/" in pick.split(": ", 1)[0] or pick.startswith("file:")):
        pick = pick.rsplit(": ", 1)[-1]
    return pick if len(pick) <= limit else pick[: limit - 1] + "…"


# --------------------------------------------------------------------------- assembly


def edge_black(
    segments: Sequence[Segment], duration_s: float | None, tolerance_s: float = 0.1
) -> tuple[float, float]:
    """``(leading, trailing)`` seconds of black: a segment starting within ``tolerance_s``
    of 0 gives the leading black (its end); one ending within ``tolerance_s`` of
    ``duration_s`` (blackdetect stops at the last frame's timestamp, one frame short) gives
    the trailing black (``duration_s`` minus its start)."""
    leading = trailing = 0.0
    if segments and segments[0].start_s <= tolerance_s:
        leading = segments[0].end_s
    if segments and duration_s is not None and segments[-1].end_s >= duration_s - tolerance_s:
        trailing = max(0.0, duration_s - segments[-1].start_s)
    return round(leading, 3), round(trailing, 3)


def build_record(
    stderr: str,
    *,
    video: Mapping[str, Any] | None,
    audio_indices: Sequence[int],
    duration_s: float | None,
    fingerprint: Fingerprint | None,
    elapsed_s: float | None = None,
) -> AnalysisRecord:
    """The :class:`AnalysisRecord` of one pass, from ffmpeg's stderr and ffprobe's stream
    object for the analysed video stream (``None`` for audio-only files)."""
    loud = loudness_of(stderr, audio_indices)
    errors = count_decode_errors(stderr)
    if video is None:
        return AnalysisRecord(
            duration_s=duration_s,
            video_stream_index=None,
            loudness=loud,
            decode_errors=errors,
            elapsed_s=elapsed_s,
        )
    black = parse_black(stderr)
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    tol = max(0.1, 2.5 / fps) if fps else 0.1
    leading, trailing = edge_black(black, duration_s, tol)
    cuts = parse_scene_cuts(stderr)
    return AnalysisRecord(
        duration_s=duration_s,
        video_stream_index=int(video["index"]),
        loudness=loud,
        black_segments=black,
        leading_black_s=leading,
        trailing_black_s=trailing,
        freeze_segments=parse_freeze(stderr, duration_s),
        scene_cut_count=len(cuts),
        scene_cuts=cuts,
        interlace=parse_idet(stderr) or Interlace("undetermined"),
        hdr_class=hdr_class_of_stream(video),
        fingerprint=fingerprint,
        decode_errors=errors,
        elapsed_s=elapsed_s,
    )


def _rate(value: Any) -> float | None:
    """``"30000/1001"`` → 29.97; None for ``0/0`` and garbage."""
    if not isinstance(value, str) or "/" not in value:
        return _num(value)
    num, _, den = value.partition("/")
    n, d = _num(num), _num(den)
    if n is None or not d:
        return None
    return n / d if n > 0 else None
