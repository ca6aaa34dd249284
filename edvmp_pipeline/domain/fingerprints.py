"""Perceptual video fingerprints and near-duplicate matching (pure Python, no I/O).

A :class:`Fingerprint` is the sequence of 64-bit dHash values of frames sampled at a fixed
rate (``rate_hz``, 1 fps by default in the analyzer), each computed from a 9x8 grayscale
thumbnail: bit ``(r, c)`` is set when pixel ``(r, c)`` is brighter than its right-hand
neighbour ``(r, c + 1)``, row-major, most significant bit first. The thumbnail is tiny, so
re-encoding, resizing and a change of aspect ratio change few bits.

Flat frames (black, a plain colour: the 72 pixels span fewer than :data:`FLAT_RANGE` grey
levels) carry no picture and are stored as the hash :data:`FLAT` (0). Two flat frames are
not evidence of sameness: aligned pairs where both frames are flat are skipped when
scoring, and flat frames are never indexed (every video that opens on black would
otherwise collide).

Similarity (:func:`similarity`) slides one hash sequence along the other within
``max_shift`` frames (robust to a few seconds trimmed at either end, and to the sampling
phase moving after a trim) and keeps the best mean Hamming similarity ``1 - d / 64`` over
the aligned frames. Unrelated frames score about 0.5; the same frames re-encoded or
resized score 0.9-1.0.

Scaling (:class:`FingerprintIndex`, :func:`near_duplicate_pairs`): every per-frame hash is
split into ``bands`` bands (4 x 16 bits by default) and bucketed by ``(band, value)``; two
fingerprints become candidates when they share at least ``min_shared`` distinct buckets,
and only candidates are scored exactly. A frame whose re-encoded copy differs by ``d`` bits
keeps one given 16-bit band intact with probability about ``(1 - d/64) ** 16`` (0.27 at
d = 5), so a near-duplicate of a few dozen frames shares many buckets while unrelated
videos share almost none. Measured on 10,000 synthetic minute-long fingerprints (the
benchmark, benchmarks/analysis_cost.py): unrelated pairs sharing 1, 2, 3, 4, 5 buckets
numbered 1.77 M, 100 k, 4.5 k, 181, 9, while every planted near-duplicate (1-6 bits of
noise per frame, up to 5 frames trimmed) shared at least 29; hence ``min_shared = 3``.
Buckets holding more than ``max_bucket`` fingerprints are
dropped as uninformative (like stop words in text search).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

HASH_BITS = 64
THUMB_W, THUMB_H = 9, 8
FRAME_BYTES = THUMB_W * THUMB_H
FLAT = 0
FLAT_RANGE = 8  # grey levels (of 255): a frame spanning fewer is flat
DEFAULT_THRESHOLD = 0.85
# Frames kept per fingerprint: 11 hours at 1 fps, 320 KB as stored, within one DynamoDB item
# (400 KB); a longer video is matched on its first 11 hours.
MAX_FRAMES = 40_000


@dataclass(frozen=True)
class Fingerprint:
    """64-bit dHash values of frames sampled every ``1 / rate_hz`` seconds from the start."""

    rate_hz: float
    hashes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.hashes)

    @cached_property
    def informative(self) -> int:
        """How many sampled frames are not flat (computed once)."""
        return sum(1 for h in self.hashes if h != FLAT)

    def to_hex(self) -> list[str]:
        """The hashes as 16-digit hex strings (JSON/Parquet friendly)."""
        return [f"{h:016x}" for h in self.hashes]

    @classmethod
    def from_hex(cls, rate_hz: float, hashes: Iterable[str]) -> Fingerprint:
        return cls(rate_hz, tuple(int(h, 16) for h in hashes))

    def to_bytes(self) -> bytes:
        """The hashes as 8 big-endian bytes each (what the state store keeps)."""
        return b"".join(h.to_bytes(8, "big") for h in self.hashes)

    @classmethod
    def from_bytes(cls, rate_hz: float, data: bytes) -> Fingerprint:
        return cls(
            rate_hz, tuple(int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8))
        )


def dhash(pixels: Sequence[int] | bytes) -> int:
    """The 64-bit difference hash of one 9x8 grayscale frame (72 values, row-major).

    :data:`FLAT` (0) when the frame spans fewer than :data:`FLAT_RANGE` grey levels.
    """
    if len(pixels) != FRAME_BYTES:
        raise ValueError(f"a dHash frame is {FRAME_BYTES} pixels, got {len(pixels)}")
    if max(pixels) - min(pixels) < FLAT_RANGE:
        return FLAT
    value = 0
    for r in range(THUMB_H):
        row = pixels[r * THUMB_W : (r + 1) * THUMB_W]
        for c in range(THUMB_W - 1):
            value = (value << 1) | (1 if row[c] > row[c + 1] else 0)
    return value


def fingerprint_from_frames(raw: bytes, rate_hz: float) -> Fingerprint:
    """The fingerprint of raw ``gray`` 9x8 frames laid end to end (ffmpeg ``-f rawvideo``).

    A trailing partial frame (a killed or cut-short decoder) is ignored, and so are frames
    past :data:`MAX_FRAMES`.
    """
    n = min(len(raw) // FRAME_BYTES, MAX_FRAMES)
    hashes = tuple(dhash(raw[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]) for i in range(n))
    return Fingerprint(rate_hz, hashes)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (a ^ b).bit_count()


def default_max_shift(n_a: int, n_b: int) -> int:
    """Frames one sequence may slide along the other: 20 % of the longer, at least 3."""
    return max(3, math.ceil(0.2 * max(n_a, n_b)))


def _score_at(a: Sequence[int], b: Sequence[int], offset: int) -> tuple[float, int]:
    """Mean Hamming similarity of ``a[i]`` against ``b[i + offset]``; and pairs scored."""
    lo = max(0, -offset)
    hi = min(len(a), len(b) - offset)
    pairs = zip(a[lo:hi], b[lo + offset : hi + offset], strict=True)
    dists = [(x ^ y).bit_count() for x, y in pairs if x or y]
    n = len(dists)
    if n == 0:
        return 0.0, 0
    total = sum(dists)
    return 1.0 - total / (n * HASH_BITS), n


def best_alignment(
    a: Fingerprint,
    b: Fingerprint,
    *,
    max_shift: int | None = None,
    min_overlap: float = 0.5,
) -> tuple[float, int]:
    """``(score, offset)``: the best mean Hamming similarity of ``a`` aligned on ``b``.

    ``a``'s frame ``i`` is compared with ``b``'s frame ``i + offset`` for every offset within
    ``max_shift`` (default :func:`default_max_shift`) whose overlap covers at least
    ``min_overlap`` of the longer fingerprint. Pairs of flat frames are skipped; an offset
    with nothing left to compare is not considered. ``(0.0, 0)`` when no offset qualifies
    (for example two all-black videos). Raises ``ValueError`` when the rates differ.
    """
    if not math.isclose(a.rate_hz, b.rate_hz):
        raise ValueError(f"fingerprints sampled at different rates: {a.rate_hz} vs {b.rate_hz}")
    ha, hb = a.hashes, b.hashes
    if not ha or not hb:
        return 0.0, 0
    shift = default_max_shift(len(ha), len(hb)) if max_shift is None else max_shift
    need = max(1, math.ceil(min_overlap * max(len(ha), len(hb))))
    best = (0.0, 0)
    for offset in range(-shift, shift + 1):
        overlap = min(len(ha), len(hb) - offset) - max(0, -offset)
        if overlap < need:
            continue
        score, n = _score_at(ha, hb, offset)
        if n and (score > best[0] or (score == best[0] and abs(offset) < abs(best[1]))):
            best = (score, offset)
    return best


def similarity(
    a: Fingerprint, b: Fingerprint, *, max_shift: int | None = None, min_overlap: float = 0.5
) -> float:
    """Similarity in [0, 1] of two fingerprints (see :func:`best_alignment`)."""
    return best_alignment(a, b, max_shift=max_shift, min_overlap=min_overlap)[0]


def band_values(h: int, bands: int) -> list[int]:
    """``h`` split into ``bands`` equal bit fields, most significant first."""
    width = HASH_BITS // bands
    mask = (1 << width) - 1
    return [(h >> (HASH_BITS - width * (i + 1))) & mask for i in range(bands)]


def bucket_ids(fp: Fingerprint, bands: int = 4) -> list[int]:
    """The distinct LSH buckets of ``fp``'s non-flat frames as integers, sorted.

    Bucket ``(band, value)`` is ``band << width | value`` (``width = 64 / bands``): the form a
    catalog table stores, so that "which held versions share buckets with this one" is a
    filter on one integer column. :class:`FingerprintIndex` buckets the same way.
    """
    if bands <= 0 or HASH_BITS % bands:
        raise ValueError(f"bands must divide {HASH_BITS}, got {bands}")
    width = HASH_BITS // bands
    return sorted(
        {
            band << width | value
            for h in fp.hashes
            if h != FLAT
            for band, value in enumerate(band_values(h, bands))
        }
    )


def shares_enough(shared: int, informative_a: int, informative_b: int, min_shared: int) -> bool:
    """Whether two fingerprints sharing ``shared`` buckets are a candidate pair: at least
    ``min_shared``, or fewer for very short fingerprints (never more than the shorter one's
    informative frame count)."""
    return shared >= max(1, min(min_shared, informative_a, informative_b))


class FingerprintIndex:
    """LSH banding index over per-frame hashes: finds candidate pairs without all pairs.

    ``bands`` must divide 64. Each fingerprint contributes the distinct ``(band, value)``
    buckets of its non-flat frames. Fingerprints with different ``rate_hz`` never pair.
    """

    def __init__(self, *, bands: int = 4, max_bucket: int = 256) -> None:
        if bands <= 0 or HASH_BITS % bands:
            raise ValueError(f"bands must divide {HASH_BITS}, got {bands}")
        self.bands = bands
        self.max_bucket = max_bucket
        self._fingerprints: dict[str, Fingerprint] = {}
        self._buckets: dict[tuple[float, int, int], list[str]] = defaultdict(list)
        self._keys: dict[str, set[tuple[float, int, int]]] = {}

    def __len__(self) -> int:
        return len(self._fingerprints)

    def _keys_of(self, fp: Fingerprint) -> set[tuple[float, int, int]]:
        keys: set[tuple[float, int, int]] = set()
        for h in fp.hashes:
            if h == FLAT:
                continue
            for band, value in enumerate(band_values(h, self.bands)):
                keys.add((fp.rate_hz, band, value))
        return keys

    def add(self, key: str, fp: Fingerprint) -> None:
        if key in self._fingerprints:
            raise ValueError(f"{key!r} is already indexed")
        self._fingerprints[key] = fp
        self._keys[key] = self._keys_of(fp)
        for bucket in self._keys[key]:
            self._buckets[bucket].append(key)

    def shared_buckets(self, min_shared: int = 1) -> dict[tuple[str, str], int]:
        """``(a, b)`` with ``a < b`` → number of distinct buckets the two share, for pairs
        sharing at least ``min_shared`` (capped, as in :meth:`candidates`).

        One sweep per fingerprint over its own buckets, with a small counter that is
        dropped straight away: the pairs sharing a single bucket (by far the most) are
        never held all at once.
        """
        info = {k: fp.informative for k, fp in self._fingerprints.items()}
        out: dict[tuple[str, str], int] = {}
        for a, keys in self._keys.items():
            counts: Counter[str] = Counter()
            for bucket in keys:
                members = self._buckets[bucket]
                if 2 <= len(members) <= self.max_bucket:
                    counts.update(members)
            info_a = info[a]
            for b, n in counts.items():
                if b > a and shares_enough(n, info_a, info[b], min_shared):
                    out[(a, b)] = n
        return out

    def candidates(self, min_shared: int = 3) -> list[tuple[str, str]]:
        """Pairs sharing at least ``min_shared`` buckets (fewer for very short fingerprints:
        never more than the shorter one's informative frame count)."""
        return sorted(self.shared_buckets(min_shared))

    def query(self, fp: Fingerprint, min_shared: int = 3) -> list[str]:
        """Indexed keys sharing at least ``min_shared`` buckets with ``fp`` (not added).

        The incremental path (is a new version a duplicate of one already held?): its cost
        is the occupancy of ``fp``'s own buckets, not the size of the index."""
        counts: Counter[str] = Counter()
        for bucket in self._keys_of(fp):
            members = self._buckets.get(bucket, ())
            if len(members) <= self.max_bucket:
                counts.update(members)
        need_fp = fp.informative
        return sorted(
            k
            for k, n in counts.items()
            if shares_enough(n, need_fp, self._fingerprints[k].informative, min_shared)
        )

    def get(self, key: str) -> Fingerprint:
        return self._fingerprints[key]


def near_duplicate_pairs(
    fingerprints: Mapping[str, Fingerprint],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    bands: int = 4,
    min_shared: int = 3,
    max_bucket: int = 256,
    max_shift: int | None = None,
    min_overlap: float = 0.5,
) -> list[tuple[str, str, float]]:
    """``(a, b, score)`` for every pair scoring at least ``threshold``, ``a < b``, best first.

    Candidates come from a :class:`FingerprintIndex`; only they are scored with
    :func:`similarity`.
    """
    index = FingerprintIndex(bands=bands, max_bucket=max_bucket)
    for key, fp in fingerprints.items():
        index.add(key, fp)
    found = []
    for a, b in index.candidates(min_shared):
        score = similarity(
            fingerprints[a], fingerprints[b], max_shift=max_shift, min_overlap=min_overlap
        )
        if score >= threshold:
            found.append((a, b, round(score, 4)))
    return sorted(found, key=lambda t: (-t[2], t[0], t[1]))


def brute_force_pairs(
    fingerprints: Mapping[str, Fingerprint],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    max_shift: int | None = None,
    min_overlap: float = 0.5,
) -> list[tuple[str, str, float]]:
    """The all-pairs baseline of :func:`near_duplicate_pairs` (same output, O(n²) scores)."""
    found = []
    for a, b in combinations(sorted(fingerprints), 2):
        fa, fb = fingerprints[a], fingerprints[b]
        if not math.isclose(fa.rate_hz, fb.rate_hz):
            continue
        score = similarity(fa, fb, max_shift=max_shift, min_overlap=min_overlap)
        if score >= threshold:
            found.append((a, b, round(score, 4)))
    return sorted(found, key=lambda t: (-t[2], t[0], t[1]))
