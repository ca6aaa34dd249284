"""Perceptual fingerprints: dHash, alignment-tolerant similarity and the LSH banding index.

Pure tests on constructed hash sequences; real media (two resolutions of one source, two
different sources) is in test_media_analysis.py.
"""

from __future__ import annotations

import random

import pytest

from edvmp_pipeline.domain.fingerprints import (
    FLAT,
    Fingerprint,
    FingerprintIndex,
    band_values,
    best_alignment,
    brute_force_pairs,
    dhash,
    fingerprint_from_frames,
    hamming,
    near_duplicate_pairs,
    similarity,
)


def _walk(rng: random.Random, n: int) -> tuple[int, ...]:
    """A video-like hash sequence: scenes of a few frames, each frame a few bits off."""
    out = []
    h = rng.getrandbits(64)
    for _ in range(n):
        if rng.random() < 0.15:
            h = rng.getrandbits(64)
        else:
            for _ in range(rng.randint(0, 3)):
                h ^= 1 << rng.randrange(64)
        out.append(h or 1)
    return tuple(out)


def _noisy(rng: random.Random, hashes: tuple[int, ...], bits: int) -> tuple[int, ...]:
    out = []
    for h in hashes:
        for _ in range(bits):
            h ^= 1 << rng.randrange(64)
        out.append(h or 1)
    return tuple(out)


def test_dhash_sets_a_bit_where_the_left_pixel_is_brighter() -> None:
    # Each row falls from left to right: every comparison is "left brighter".
    falling = bytes(200 - 20 * c for _ in range(8) for c in range(9))
    assert dhash(falling) == (1 << 64) - 1
    rising = bytes(20 * c for _ in range(8) for c in range(9))
    assert dhash(rising) == 0
    # Only the first pixel of the first row is bright: the most significant bit only.
    one = bytearray(50 for _ in range(72))
    one[0] = 200
    assert dhash(bytes(one)) == 1 << 63


def test_flat_frames_hash_to_flat_and_partial_frames_are_ignored() -> None:
    black = bytes([16] * 72)
    nearly = bytes([16 + (i % 5) for i in range(72)])  # 5 grey levels of noise: flat
    assert dhash(black) == FLAT
    assert dhash(nearly) == FLAT
    fp = fingerprint_from_frames(black + nearly + b"\x00" * 10, rate_hz=2.0)
    assert fp == Fingerprint(2.0, (FLAT, FLAT))
    assert fp.informative == 0
    with pytest.raises(ValueError):
        dhash(b"\x00" * 71)


def test_hex_round_trip() -> None:
    fp = Fingerprint(1.0, (0, 1, (1 << 64) - 1))
    assert fp.to_hex() == ["0000000000000000", "0000000000000001", "ffffffffffffffff"]
    assert Fingerprint.from_hex(1.0, fp.to_hex()) == fp


def test_identical_sequences_score_one_and_unrelated_about_half() -> None:
    rng = random.Random(1)
    a = Fingerprint(1.0, _walk(rng, 60))
    b = Fingerprint(1.0, _walk(rng, 60))
    assert similarity(a, a) == 1.0
    assert 0.4 < similarity(b, a) < 0.65


def test_similarity_finds_the_offset_of_a_trimmed_copy() -> None:
    rng = random.Random(2)
    full = _walk(rng, 60)
    trimmed = Fingerprint(1.0, _noisy(rng, full[5:55], 3))  # 5 s cut off each end, re-encoded
    score, offset = best_alignment(trimmed, Fingerprint(1.0, full))
    assert offset == 5
    assert score == pytest.approx(1 - 3 / 64, abs=0.02)
    # Without room to slide, the same pair looks unrelated.
    assert similarity(trimmed, Fingerprint(1.0, full), max_shift=0) < 0.8


def test_pairs_of_flat_frames_are_not_evidence() -> None:
    black = Fingerprint(1.0, (FLAT,) * 10)
    assert similarity(black, black) == 0.0
    rng = random.Random(3)
    body = _walk(rng, 10)
    # Same black opening, different content after it: the black does not lift the score.
    a = Fingerprint(1.0, (FLAT,) * 5 + body)
    b = Fingerprint(1.0, (FLAT,) * 5 + _walk(rng, 10))
    assert similarity(a, b) < 0.7
    assert similarity(a, Fingerprint(1.0, (FLAT,) * 5 + body)) == 1.0


def test_different_rates_do_not_compare() -> None:
    with pytest.raises(ValueError, match="different rates"):
        similarity(Fingerprint(1.0, (1,)), Fingerprint(2.0, (1,)))


def test_band_values_split_the_hash_most_significant_first() -> None:
    assert band_values(0x0123_4567_89AB_CDEF, 4) == [0x0123, 0x4567, 0x89AB, 0xCDEF]
    assert hamming(0b1011, 0b0001) == 2
    with pytest.raises(ValueError):
        FingerprintIndex(bands=3)


def test_index_finds_what_all_pairs_finds_on_planted_near_duplicates() -> None:
    rng = random.Random(4)
    fps: dict[str, Fingerprint] = {}
    for i in range(150):
        fps[f"v{i:03d}"] = Fingerprint(1.0, _walk(rng, 40))
    planted = set()
    for i in range(0, 150, 10):
        src = fps[f"v{i:03d}"].hashes
        fps[f"d{i:03d}"] = Fingerprint(1.0, _noisy(rng, src[2:38], rng.randint(1, 5)))
        planted.add((f"d{i:03d}", f"v{i:03d}"))
    fast = near_duplicate_pairs(fps, 0.85)
    slow = brute_force_pairs(fps, 0.85)
    assert fast == slow
    assert {(a, b) for a, b, _ in fast} == planted
    assert all(score >= 0.85 for _, _, score in fast)
    # The index scored only a sliver of the 165 * 164 / 2 pairs.
    index = FingerprintIndex()
    for key, fp in fps.items():
        index.add(key, fp)
    assert len(index.candidates()) < 0.01 * len(fps) ** 2 / 2
    assert {"d010", "v010"} <= set(index.query(fps["v010"]))


def test_short_fingerprints_still_pair() -> None:
    # Two sampled frames each: min_shared is capped at what the shorter one has.
    a = Fingerprint(1.0, (0x0123_4567_89AB_CDEF, 0x1111_2222_3333_4444))
    b = Fingerprint(1.0, (0x0123_4567_89AB_CDEE, 0x1111_2222_3333_4445))
    assert near_duplicate_pairs({"a": a, "b": b}, 0.9, min_shared=5) == [("a", "b", 0.9844)]
    with pytest.raises(ValueError, match="already indexed"):
        index = FingerprintIndex()
        index.add("a", a)
        index.add("a", a)
