"""Container structure checks: is the object shorter than its own top-level structure says?

Pure: the caller passes ``read(offset, length) -> bytes`` (fewer bytes at the end of the
object, ``b""`` past it) and the object's size; nothing here opens files or sockets.

ffprobe reads the header and index and stops, so a file cut after its index probes "fine":
a faststart MP4 (moov before mdat) cut to 97 % and a Matroska/WebM cut to 50 % report their
full duration, and so does an FLV (ffprobe takes its duration from the metadata); a cut
AVI probes as a shorter clip. These containers say how long they are without decoding
anything:

* ISO-BMFF (MP4/MOV): top-level boxes follow each other to the end of the file, each with a
  32-bit size, or ``1`` and a 64-bit ``largesize`` after the type, or ``0`` for "to the end
  of the file". A box claiming more bytes than the object holds is cut off.
* EBML (Matroska/WebM): the EBML header is followed by the Segment, whose size (a VINT) is
  written when the muxer finishes. A Segment of unknown size (all value bits 1) is legal, for
  live streams and non-seekable output, and says nothing about truncation.
* RIFF (AVI): the file is one ``RIFF`` chunk (an OpenDML AVI over 1 GB adds ``RIFF AVIX``
  chunks after it), each with a 32-bit little-endian size. ffprobe rebuilds a cut AVI's
  index by scanning and reports what is left as a shorter, "good" clip. A size of 0 or
  ``0xFFFFFFFF`` is a writer that never went back to fill it in, and proves nothing.
* FLV: the header has no size, but the ``onMetaData`` script tag that opens the body
  carries ``filesize`` (and ``duration``, which ffprobe reports as the clip's duration
  however much of the file is left). ffmpeg and most writers fill it in when they finish;
  0 (non-seekable output) proves nothing.

* ASF (WMV/WMA): top-level objects (Header, Data, the indexes) follow each other, each a
  16-byte GUID and a 64-bit little-endian size. ffprobe takes a cut ASF's duration from the
  header (a half file reported 7.6 s for a 2 s clip, a 97 % one the full 2 s). A broadcast
  file (File Properties flag 1: live, non-seekable output) has no valid sizes and is not
  judged.
* MXF: the header partition pack names the footer partition's offset (0 until the writer
  finishes: an open, incomplete header proves nothing); a footer that would start past the
  object's end means the object is cut. ffprobe reports a cut MXF's full duration.

Walks are bounded (:data:`MAX_TOP_LEVEL`, one read of a few bytes per element): a normal
file has fewer than ten top-level elements; a fragmented MP4 with more is not judged here.
Only clear evidence counts: junk after the last element (test fixtures append a few bytes to
make new versions) and unparseable headers end a walk without a verdict.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

Reader = Callable[[int, int], bytes]
"""``read(offset, length)``: up to ``length`` bytes at ``offset`` (fewer at the end)."""

MAX_TOP_LEVEL = 64

MP4_HEADER = 16  # size, type, and the largesize that follows when size == 1
EBML_HEADER = 12  # up to 4 bytes of element ID and 8 of size

RIFF_MAGIC = b"RIFF"
RIFF_HEADER = 12  # "RIFF", 32-bit little-endian size, form type ("AVI ", "AVIX")
RIFF_SIZE_UNKNOWN = frozenset({0, 0xFFFFFFFF})

FLV_MAGIC = b"FLV"
FLV_HEADER = 9
FLV_TAG_HEADER = 11
FLV_SCRIPT_TAG = 18
# Bytes of the onMetaData tag searched for "filesize": one range read (the object store's
# reader answers at most 4 KiB a read); ffmpeg's onMetaData is about 300 bytes.
FLV_SCRIPT_BYTES = 4096
# The metadata is a writer's claim, not the container's structure: a stream dump can carry
# the server's onMetaData for a file laid out a little differently. Only a shortfall of
# more than 1 % of the declared size is a cut.
FLV_FILESIZE_SLACK = 0.01
# AMF0 key "filesize" (16-bit length, name) followed by the number marker 0x00 and a
# big-endian IEEE double.
_FLV_FILESIZE_KEY = b"\x00\x08filesize\x00"

ASF_HEADER_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
ASF_MAGIC = ASF_HEADER_GUID
ASF_FILE_PROPERTIES_GUID = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")
# Top-level ASF objects (GUIDs as stored, little-endian fields first). Only these are
# believed when they overrun the object: anything else ends the walk (appended junk).
ASF_TOP_LEVEL = {
    ASF_HEADER_GUID: "Header",
    bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c"): "Data",
    bytes.fromhex("90080033b1e5cf1189f400a0c90349cb"): "Simple Index",
    bytes.fromhex("d329e2d6da35d111903400a0c90349be"): "Index",
}
ASF_OBJECT_HEADER = 24  # GUID, 64-bit little-endian size
ASF_HEADER_OBJECT = 30  # plus the number of header objects (32 bits) and 2 reserved bytes
ASF_FLAGS_OFFSET = 88  # of the File Properties object: GUIDs, sizes, times, then flags
ASF_BROADCAST = 0x1
ASF_SCAN_BYTES = 4096  # one range read: the header objects usually fit in it

MXF_MAGIC = bytes.fromhex("060e2b34")
# Header partition pack key: the 14th byte is 0x02 (header), the 15th its status (01-04).
MXF_HEADER_PARTITION = bytes.fromhex("060e2b34020501010d0102010102")
MXF_FOOTER_AT = 2 + 2 + 4 + 8 + 8  # in the pack's value: versions, KAG size, this/previous offsets

WEBP_ANIMATION_FLAG = 0x02  # in the VP8X chunk's flags byte

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_SCAN_BYTES = 4096  # one range read: the object store's reader answers at most 4 KiB

EBML_ID = 0x1A45DFA3
SEGMENT_ID = 0x18538067
VOID_ID = 0xEC
TRACKS_ID = 0x1654AE6B
TRACK_ENTRY_ID = 0xAE
TRACK_TYPE_ID = 0x83
TRACK_TYPE_VIDEO = 1
CODEC_ID_ID = 0x86
CLUSTER_ID = 0x1F43B675
MAX_CODEC_ID = 64  # Matroska codec IDs are short ASCII strings
EBML_SCAN_BYTES = 4096  # one range read: SeekHead, Info and Tracks usually fit in it
EBML_MAGIC = EBML_ID.to_bytes(4, "big")
_EBML_NAMES = {EBML_ID: "EBML header", SEGMENT_ID: "Segment", VOID_ID: "Void"}

# Top-level ISO-BMFF boxes that may open an MP4/MOV file (old QuickTime has no ftyp).
MP4_OPENING_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"})
# Boxes that live at the top level (ISO/IEC 14496-12, QuickTime). Only these are believed
# when they overrun the object: four printable bytes and a size turn up in about 2 % of
# random tails, and junk appended to a file is not a truncation.
MP4_TOP_LEVEL_BOXES = MP4_OPENING_BOXES | frozenset(
    {b"styp", b"moof", b"mfra", b"sidx", b"ssix", b"prft", b"emsg", b"pdin", b"meta",
     b"uuid", b"junk", b"pnot", b"bloc"}
)  # fmt: skip


def bytes_reader(data: bytes) -> Reader:
    """A reader over bytes already in hand (the leading bytes, a test's file)."""

    def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length] if offset >= 0 else b""

    return read


def prefixed_reader(prefix: bytes, read: Reader) -> Reader:
    """``read``, answering from ``prefix`` (the object's first bytes) when it can, so the
    headers near the start cost no I/O."""

    def cached(offset: int, length: int) -> bytes:
        if offset + length <= len(prefix):
            return prefix[offset : offset + length]
        return read(offset, length)

    return cached


# --------------------------------------------------------------------------- ISO-BMFF


@dataclass(frozen=True)
class Box:
    """One top-level ISO-BMFF box as its header states it."""

    kind: str
    offset: int
    end: int
    """Offset just past the box; for a size-0 box, the end of the object."""
    open_ended: bool = False
    """Size 0: "runs to the end of the file" (the writer never went back to fix it)."""


@dataclass(frozen=True)
class BoxWalk:
    """The top-level boxes read, in order; the walk stops after a box that overruns."""

    boxes: tuple[Box, ...]
    size: int
    """The object's size."""
    stopped_at: int
    """Offset after the last whole box: ``size`` when the boxes tile the object exactly."""

    @property
    def overrun(self) -> Box | None:
        """The box that claims more bytes than the object holds, if any."""
        last = self.boxes[-1] if self.boxes else None
        return last if last is not None and last.end > self.size else None

    @property
    def complete(self) -> bool:
        """The boxes cover the object exactly, end to end."""
        return bool(self.boxes) and self.stopped_at == self.size and self.overrun is None


def _box_type_ok(kind: bytes) -> bool:
    # Box types are four printable characters (QuickTime adds the copyright sign); anything
    # else is not a box header, e.g. bytes appended after the last box.
    return all(0x20 <= b <= 0x7E or b == 0xA9 for b in kind)


def walk_mp4_boxes(read: Reader, size: int, *, max_boxes: int = MAX_TOP_LEVEL) -> BoxWalk:
    """Walk the top-level boxes of an ISO-BMFF object of ``size`` bytes.

    Stops at the end of the object, at a box that overruns it (one of
    :data:`MP4_TOP_LEVEL_BOXES`: an unknown one ends the walk unrecorded), at an open-ended
    (size 0) box, at a header it cannot read or parse, or after ``max_boxes`` boxes.
    """
    boxes: list[Box] = []
    pos = 0
    while pos < size and len(boxes) < max_boxes:
        header = read(pos, MP4_HEADER)
        if len(header) < 8:
            break  # fewer than 8 bytes left: not a box header (or nothing more readable)
        box_size, kind = struct.unpack(">I4s", header[:8])
        if not _box_type_ok(kind):
            break
        name = kind.decode("latin-1")
        known = kind in MP4_TOP_LEVEL_BOXES
        if box_size == 0:
            boxes.append(Box(name, pos, size, open_ended=True))
            pos = size
            break
        if box_size == 1:
            if len(header) < 16:
                if pos + 16 > size and known:
                    # The object ends inside the header of a 64-bit box.
                    boxes.append(Box(name, pos, pos + 16))
                break
            box_size = struct.unpack(">Q", header[8:16])[0]
            if box_size < 16:
                break
        elif box_size < 8:
            break
        if pos + box_size > size and not known:
            break  # an unknown box running past the end: more likely junk than a cut
        boxes.append(Box(name, pos, pos + box_size))
        if pos + box_size > size:
            break
        pos += box_size
    return BoxWalk(tuple(boxes), size, pos)


def mp4_truncation(read: Reader, size: int) -> str | None:
    """Why an MP4/MOV of ``size`` bytes is truncated, or None when its boxes fit.

    The reason names the box: "truncated file: 'mdat' box needs N bytes, object holds M".
    """
    box = walk_mp4_boxes(read, size).overrun
    if box is None:
        return None
    return f"truncated file: '{box.kind}' box needs {box.end:,} bytes, object holds {size:,}"


# ------------------------------------------------------------------------------- EBML


def _vint_length(first: int) -> int:
    """Bytes of a VINT from its first byte (the position of the first 1 bit); 0 if none."""
    for length in range(1, 9):
        if first & (0x80 >> (length - 1)):
            return length
    return 0


@dataclass(frozen=True)
class Element:
    """One top-level EBML element as its header states it."""

    element_id: int
    offset: int
    data_offset: int
    end: int | None
    """Offset just past the element; None for an unknown size."""

    @property
    def name(self) -> str:
        """The Matroska name of the element (its hex ID when it has none here)."""
        return _EBML_NAMES.get(self.element_id, f"0x{self.element_id:X}")


def _parse_ebml_header(header: bytes, offset: int) -> Element | None:
    if not header:
        return None
    id_len = _vint_length(header[0])
    if not 1 <= id_len <= 4 or len(header) < id_len + 1:
        return None
    element_id = int.from_bytes(header[:id_len], "big")
    size_len = _vint_length(header[id_len])
    if size_len == 0 or len(header) < id_len + size_len:
        return None
    raw = int.from_bytes(header[id_len : id_len + size_len], "big")
    value = raw & ((1 << (7 * size_len)) - 1)
    data_offset = offset + id_len + size_len
    unknown = value == (1 << (7 * size_len)) - 1
    return Element(element_id, offset, data_offset, None if unknown else data_offset + value)


def walk_ebml_elements(
    read: Reader, size: int, *, max_elements: int = MAX_TOP_LEVEL
) -> tuple[Element, ...]:
    """The top-level elements of a Matroska/WebM object of ``size`` bytes, in order.

    The EBML header comes first, then (after any Void) the Segment; after a Segment only
    another Segment is read, so bytes appended to a file are not taken for an element. The
    walk stops at anything else, at an unknown-size element (it runs to the end), at one
    that overruns the object, at the end of the object or after ``max_elements`` elements.
    """
    elements: list[Element] = []
    pos = 0
    while pos < size and len(elements) < max_elements:
        element = _parse_ebml_header(read(pos, EBML_HEADER), pos)
        if element is None:
            break
        if not elements:
            allowed = {EBML_ID}
        elif any(e.element_id == SEGMENT_ID for e in elements):
            allowed = {SEGMENT_ID}
        else:
            allowed = {SEGMENT_ID, VOID_ID}
        if element.element_id not in allowed:
            break
        elements.append(element)
        if element.end is None or element.end > size:
            break
        pos = element.end
    return tuple(elements)


def ebml_truncation(read: Reader, size: int) -> str | None:
    """Why a Matroska/WebM object of ``size`` bytes is truncated, or None.

    None as well for an unknown-size Segment (live streams): its size proves nothing.
    """
    for element in walk_ebml_elements(read, size):
        if element.end is not None and element.end > size:
            return (
                f"truncated file: Matroska/WebM '{element.name}' element needs "
                f"{element.end:,} bytes, object holds {size:,}"
            )
    return None


# ------------------------------------------------------------------------------- RIFF


def riff_truncation(read: Reader, size: int) -> str | None:
    """Why a RIFF (AVI) object of ``size`` bytes is truncated, or None.

    Walks the top-level ``RIFF`` chunks (one per 1 GB part of an OpenDML AVI); bytes after
    them that are not another ``RIFF`` chunk end the walk without a verdict (appended junk).
    """
    pos = 0
    for _ in range(MAX_TOP_LEVEL):
        if pos >= size:
            break
        header = read(pos, RIFF_HEADER)
        if len(header) < RIFF_HEADER or header[:4] != RIFF_MAGIC:
            break
        (chunk_size,) = struct.unpack("<I", header[4:8])
        form = header[8:12]
        if chunk_size in RIFF_SIZE_UNKNOWN or not _box_type_ok(form):
            break
        end = pos + 8 + chunk_size
        if end > size:
            return (
                f"truncated file: RIFF '{form.decode('latin-1').strip()}' chunk needs "
                f"{end:,} bytes, object holds {size:,}"
            )
        pos = end + (chunk_size & 1)  # chunks are padded to an even size
    return None


# -------------------------------------------------------------------------------- FLV


def flv_truncation(read: Reader, size: int) -> str | None:
    """Why an FLV object of ``size`` bytes is truncated, or None.

    Compares the ``filesize`` its opening ``onMetaData`` tag declares with ``size``; None
    when there is no such tag or key in its first :data:`FLV_SCRIPT_BYTES` bytes, when the
    value is 0 or not a number, or when ``size`` falls short of it by at most
    :data:`FLV_FILESIZE_SLACK`.
    """
    header = read(0, FLV_HEADER)
    if len(header) < FLV_HEADER or not header.startswith(FLV_MAGIC):
        return None
    (body,) = struct.unpack(">I", header[5:9])
    # The body starts with PreviousTagSize0 (4 bytes), then the first tag.
    tag = read(body + 4, FLV_TAG_HEADER)
    if len(tag) < FLV_TAG_HEADER or tag[0] & 0x1F != FLV_SCRIPT_TAG:
        return None
    data_size = int.from_bytes(tag[1:4], "big")
    data = read(body + 4 + FLV_TAG_HEADER, min(data_size, FLV_SCRIPT_BYTES))
    at = data.find(_FLV_FILESIZE_KEY)
    if at < 0:
        return None
    value = data[at + len(_FLV_FILESIZE_KEY) : at + len(_FLV_FILESIZE_KEY) + 8]
    if len(value) < 8:
        return None
    (declared,) = struct.unpack(">d", value)
    if not math.isfinite(declared) or declared - size <= declared * FLV_FILESIZE_SLACK:
        return None
    return (
        f"truncated file: FLV metadata declares filesize {int(declared):,} bytes, object "
        f"holds {size:,}"
    )


# -------------------------------------------------------------------------------- ASF


def _asf_broadcast(read: Reader, header_end: int) -> bool:
    """True when the Header object's File Properties say "broadcast" (sizes invalid)."""
    pos = ASF_HEADER_OBJECT
    for _ in range(MAX_TOP_LEVEL):
        if pos + ASF_OBJECT_HEADER > header_end:
            return False
        child = read(pos, ASF_OBJECT_HEADER)
        if len(child) < ASF_OBJECT_HEADER:
            return False
        (child_size,) = struct.unpack("<Q", child[16:24])
        if child[:16] == ASF_FILE_PROPERTIES_GUID:
            flags = read(pos + ASF_FLAGS_OFFSET, 4)
            return len(flags) == 4 and bool(struct.unpack("<I", flags)[0] & ASF_BROADCAST)
        if child_size < ASF_OBJECT_HEADER:
            return False
        pos += child_size
    return False


def asf_truncation(read: Reader, size: int) -> str | None:
    """Why an ASF (WMV/WMA) object of ``size`` bytes is truncated, or None.

    Walks the top-level objects (:data:`ASF_TOP_LEVEL`); an unknown GUID, a size below an
    object header or a broadcast file ends the walk without a verdict.
    """
    read = prefixed_reader(read(0, ASF_SCAN_BYTES), read)
    pos = 0
    for _ in range(MAX_TOP_LEVEL):
        if pos >= size:
            break
        header = read(pos, ASF_OBJECT_HEADER)
        if len(header) < ASF_OBJECT_HEADER:
            break
        name = ASF_TOP_LEVEL.get(header[:16])
        (object_size,) = struct.unpack("<Q", header[16:24])
        if name is None or object_size < ASF_OBJECT_HEADER:
            break
        if pos == 0 and (name != "Header" or _asf_broadcast(read, min(object_size, size))):
            break
        end = pos + object_size
        if end > size:
            return f"truncated file: ASF '{name}' object needs {end:,} bytes, object holds {size:,}"
        pos = end
    return None


# -------------------------------------------------------------------------------- MXF


def mxf_truncation(read: Reader, size: int) -> str | None:
    """Why an MXF object of ``size`` bytes is truncated, or None.

    Reads the FooterPartition offset of the header partition pack at the start of the
    object (a run-in before it is not looked for); 0 (not yet known) gives no verdict.
    """
    key = read(0, 17)
    if len(key) < 17 or not key.startswith(MXF_HEADER_PARTITION):
        return None
    first = key[16]
    length_bytes = first & 0x7F if first & 0x80 else 0
    if length_bytes > 8:
        return None
    value_at = 17 + length_bytes
    footer = read(value_at + MXF_FOOTER_AT, 8)
    if len(footer) < 8:
        return None
    (footer_at,) = struct.unpack(">Q", footer)
    if footer_at == 0 or footer_at + len(MXF_HEADER_PARTITION) <= size:
        return None
    return (
        f"truncated file: MXF header partition puts the footer partition at byte "
        f"{footer_at:,}, object holds {size:,}"
    )


# -------------------------------------------------------------------------------- PNG


def apng_frame_count(read: Reader) -> int | None:
    """``num_frames`` of an animated PNG's ``acTL`` chunk, or None when the object is not a
    PNG or no ``acTL`` comes before the image data (within :data:`MAX_TOP_LEVEL` chunks).

    Not a truncation check: ffprobe's APNG demuxer reports neither a frame count nor a
    duration, and this count is what tells an animation from a picture. The chunks before
    ``acTL`` (``IHDR``, ``pHYs``, an ICC profile) usually fit the first read.
    """
    read = prefixed_reader(read(0, PNG_SCAN_BYTES), read)
    if read(0, len(PNG_MAGIC)) != PNG_MAGIC:
        return None
    pos = len(PNG_MAGIC)
    for _ in range(MAX_TOP_LEVEL):
        # Chunk: 32-bit big-endian data length, type, data, CRC; acTL data starts with
        # num_frames.
        header = read(pos, 12)
        if len(header) < 12:
            return None
        length, kind = struct.unpack(">I4s", header[:8])
        if kind == b"acTL":
            return int.from_bytes(header[8:12], "big")
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def webp_is_animated(read: Reader) -> bool:
    """True when the object is a WebP (``RIFF`` … ``WEBP``) whose extended header (``VP8X``)
    sets the animation flag.

    Not a truncation check: ffprobe names every WebP ``webp_pipe``, the demuxer of single
    pictures, and this flag is what tells an animation from a picture.
    """
    header = read(0, 21)
    return (
        len(header) == 21
        and header.startswith(RIFF_MAGIC)
        and header[8:16] == b"WEBPVP8X"
        and bool(header[20] & WEBP_ANIMATION_FLAG)
    )


def _ebml_children(read: Reader, start: int, end: int) -> list[Element]:
    """The child elements of the master element whose data is ``[start, end)``, in order
    (at most :data:`MAX_TOP_LEVEL`); stops at an unknown-size or unparseable child."""
    children: list[Element] = []
    pos = start
    while pos < end and len(children) < MAX_TOP_LEVEL:
        child = _parse_ebml_header(read(pos, EBML_HEADER), pos)
        if child is None or child.end is None:
            break
        children.append(child)
        pos = child.end
    return children


def matroska_video_codec_id(read: Reader, size: int) -> str | None:
    """The ``CodecID`` of the first video track of a Matroska/WebM object (``V_MPEG4/ISO/AVC``,
    ``V_MPEGI/ISO/VVC``), or None when the Tracks element is not found before the first
    Cluster among the Segment's first :data:`MAX_TOP_LEVEL` children.

    Not a truncation check: ffprobe shows no codec tag for a Matroska codec it does not
    know, and this ID is what tells an unknown codec from a damaged track header.
    """
    read = prefixed_reader(read(0, EBML_SCAN_BYTES), read)
    segment = next((e for e in walk_ebml_elements(read, size) if e.element_id == SEGMENT_ID), None)
    if segment is None:
        return None
    segment_end = min(segment.end if segment.end is not None else size, size)
    for child in _ebml_children(read, segment.data_offset, segment_end):
        if child.element_id == CLUSTER_ID:
            return None  # the media data has begun: the muxer put no Tracks before it
        if child.element_id != TRACKS_ID or child.end is None:
            continue
        for entry in _ebml_children(read, child.data_offset, child.end):
            if entry.element_id != TRACK_ENTRY_ID or entry.end is None:
                continue
            fields = {f.element_id: f for f in _ebml_children(read, entry.data_offset, entry.end)}
            kind, codec = fields.get(TRACK_TYPE_ID), fields.get(CODEC_ID_ID)
            if kind is None or codec is None or codec.end is None:
                continue
            if read(kind.data_offset, 1) != bytes([TRACK_TYPE_VIDEO]):
                continue
            length = min(codec.end - codec.data_offset, MAX_CODEC_ID)
            text = read(codec.data_offset, length).rstrip(b"\x00")
            # An ASCII ID such as V_VP9; anything else is a damaged header, not a name.
            if text and all(0x21 <= b <= 0x7E for b in text):
                return text.decode("ascii")
            return None
        return None
    return None


# ----------------------------------------------------------------------------- dispatch


def truncation_reason(read: Reader, size: int, leading_bytes: bytes) -> str | None:
    """The truncation reason for an MP4/MOV, Matroska/WebM, RIFF (AVI), FLV, ASF or MXF object,
    chosen by its first bytes; None when the structure fits the size or the container is
    not one of these."""
    if size <= 0:
        return None
    read = prefixed_reader(leading_bytes, read)
    if leading_bytes.startswith(EBML_MAGIC):
        return ebml_truncation(read, size)
    if leading_bytes.startswith(RIFF_MAGIC):
        return riff_truncation(read, size)
    if leading_bytes.startswith(FLV_MAGIC):
        return flv_truncation(read, size)
    if leading_bytes.startswith(ASF_MAGIC):
        return asf_truncation(read, size)
    if leading_bytes.startswith(MXF_MAGIC):
        return mxf_truncation(read, size)
    if leading_bytes[4:8] in MP4_OPENING_BOXES:
        return mp4_truncation(read, size)
    return None
