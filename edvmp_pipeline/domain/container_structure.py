"""Container structure checks: is the object shorter than its own top-level structure says?

Pure: the caller passes ``read(offset, length) -> bytes`` (fewer bytes at the end of the
object, ``b""`` past it) and the object's size; nothing here opens files or sockets.

ffprobe reads the header and index and stops, so a file cut after its index probes "fine":
a faststart MP4 (moov before mdat) cut to 97 % and a Matroska/WebM cut to 50 % report their
full duration. Both containers say how long they are without decoding anything:

* ISO-BMFF (MP4/MOV): top-level boxes follow each other to the end of the file, each with a
  32-bit size, or ``1`` and a 64-bit ``largesize`` after the type, or ``0`` for "to the end
  of the file". A box claiming more bytes than the object holds is cut off.
* EBML (Matroska/WebM): the EBML header is followed by the Segment, whose size (a VINT) is
  written when the muxer finishes. A Segment of unknown size (all value bits 1) is legal, for
  live streams and non-seekable output, and says nothing about truncation.

Walks are bounded (:data:`MAX_TOP_LEVEL`, one read of a few bytes per element): a normal
file has fewer than ten top-level elements; a fragmented MP4 with more is not judged here.
Only clear evidence counts: junk after the last element (test fixtures append a few bytes to
make new versions) and unparseable headers end a walk without a verdict.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

Reader = Callable[[int, int], bytes]
"""``read(offset, length)``: up to ``length`` bytes at ``offset`` (fewer at the end)."""

MAX_TOP_LEVEL = 64

MP4_HEADER = 16  # size, type, and the largesize that follows when size == 1
EBML_HEADER = 12  # up to 4 bytes of element ID and 8 of size

EBML_ID = 0x1A45DFA3
SEGMENT_ID = 0x18538067
VOID_ID = 0xEC
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


# ----------------------------------------------------------------------------- dispatch


def truncation_reason(read: Reader, size: int, leading_bytes: bytes) -> str | None:
    """The truncation reason for an MP4/MOV or Matroska/WebM object, chosen by its first
    bytes; None when the structure fits the size or the container is not one of these."""
    if size <= 0:
        return None
    read = prefixed_reader(leading_bytes, read)
    if leading_bytes.startswith(EBML_MAGIC):
        return ebml_truncation(read, size)
    if leading_bytes[4:8] in MP4_OPENING_BOXES:
        return mp4_truncation(read, size)
    return None
