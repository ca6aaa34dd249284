"""Analysis cost per resolution, and near-duplicate matching at 10,000 versions.

    .venv/bin/python benchmarks/analysis_cost.py [--resolutions 320x240,640x360,1280x720,1920x1080]
        [--seconds 5] [--repeat 3] [--versions 10000] [--frames 60] [--planted 200]
        [--brute 400] [--catalog-versions 1000,10000,100000] [--probes 20]
        [--skip-media] [--skip-matching] [--skip-catalog]

(a) Analysis cost. For each resolution, ffmpeg makes a ``--seconds`` clip (testsrc2 at
25 fps, libx264 ``veryfast`` CRF 23, stereo AAC sine) in a temporary folder; the table
reports the median over ``--repeat`` runs of :func:`edvmp_pipeline.adapters.analyzer.analyze`
(ffprobe excluded: the streams are passed in, as the pipeline will) as a multiple of real
time (``x_realtime`` = wall seconds / media seconds, below 1 is faster than real time), next
to a plain decode of the same file (``ffmpeg -i f -f null -``) so the filters' own cost shows.

(b) Matching. ``--versions`` synthetic fingerprints of ``--frames`` hashes (1 fps, so 60 =
one minute of video): ``--versions - --planted`` independent "videos" (random-walk hash
sequences: scenes of a few frames, a few bits changing per frame) and ``--planted``
near-duplicates of some of them (each frame 1-6 bits off, 0-5 frames trimmed at each end).
:func:`near_duplicate_pairs` (LSH banding, 4 x 16-bit bands) runs over all of them; recall
is over the planted pairs, ``extra`` counts reported pairs that were not planted. The
all-pairs baseline (:func:`brute_force_pairs`) runs on the first ``--brute`` fingerprints
(with their planted copies) and is extrapolated to all pairs of ``--versions``; on that
subset both must report the same pairs.

(c) The catalog's index (what the pipeline runs). ``--catalog-versions`` checkpoints
(default 1,000,10,000,100,000): synthetic analysed versions (fingerprints as in (b)) are
landed in a temporary catalog in batches of 1,000 (analysis rows, compacted by their writers
as in production, and the state store's bucket index); at each checkpoint ``--probes`` new
versions (half near-copies of held ones, half unrelated) are landed and looked up one by
one, as event runs do (:func:`edvmp_pipeline.services.analysis.find_near_duplicates`:
one DuckDB join of the version's buckets with the index, then exact scores of the
candidates). The table gives the lookup time per version and its ratio to the first
checkpoint, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from edvmp_pipeline.adapters.analyzer import analyze, probe_streams  # noqa: E402
from edvmp_pipeline.domain.fingerprints import (  # noqa: E402
    Fingerprint,
    FingerprintIndex,
    brute_force_pairs,
    near_duplicate_pairs,
    similarity,
)

THRESHOLD = 0.85


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    subprocess.run(cmd, check=True, capture_output=True)


def _clip(folder: Path, size: str, seconds: float) -> Path:
    path = folder / f"clip_{size}.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=48000:duration={seconds}",
        "-ac", "2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path),
    )  # fmt: skip
    return path


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_media(resolutions: list[str], seconds: float, repeat: int) -> None:
    print(f"(a) analysis cost, {seconds:g} s clips, {os.cpu_count()} CPUs, median of {repeat}")
    head = ("resolution", "decode_s", "analyze_s", "x_realtime", "decode_x_rt", "filters_x")
    print("  ".join(f"{h:>11}" for h in head))
    with tempfile.TemporaryDirectory() as tmp:
        for size in resolutions:
            path = _clip(Path(tmp), size, seconds)
            probe = probe_streams(str(path), timeout_s=60)
            decode = statistics.median(
                _timed(lambda p=path: _ffmpeg("-i", str(p), "-f", "null", "-"))
                for _ in range(repeat)
            )
            runs = []
            for _ in range(repeat):
                runs.append(
                    _timed(lambda p=path, q=probe: analyze(str(p), timeout_s=600, streams=q))
                )
            rec = analyze(str(path), timeout_s=600, streams=probe)
            assert rec.fingerprint is not None and rec.loudness
            took = statistics.median(runs)
            row = (size, f"{decode:.3f}", f"{took:.3f}", f"{took / seconds:.3f}",
                   f"{decode / seconds:.3f}", f"{took / decode:.2f}")  # fmt: skip
            print("  ".join(f"{c:>11}" for c in row))
    print()


def _walk(rng: random.Random, n: int) -> tuple[int, ...]:
    out = []
    h = rng.getrandbits(64)
    for _ in range(n):
        if rng.random() < 0.15:  # a cut: a new picture
            h = rng.getrandbits(64)
        else:
            for _ in range(rng.randint(0, 3)):
                h ^= 1 << rng.randrange(64)
        out.append(h or 1)
    return tuple(out)


def _near_copy(rng: random.Random, hashes: tuple[int, ...]) -> tuple[int, ...]:
    head, tail = rng.randint(0, 5), rng.randint(0, 5)
    noise = rng.randint(1, 6)
    out = []
    for h in hashes[head : len(hashes) - tail]:
        for _ in range(noise):
            h ^= 1 << rng.randrange(64)
        out.append(h or 1)
    return tuple(out)


def corpus(versions: int, frames: int, planted: int, seed: int = 13):
    rng = random.Random(seed)
    originals = versions - planted
    fps = {f"v{i:05d}": Fingerprint(1.0, _walk(rng, frames)) for i in range(originals)}
    pairs = set()
    step = max(1, originals // planted)
    for k in range(planted):
        src = f"v{(k * step) % originals:05d}"
        dup = f"w{k:05d}"
        fps[dup] = Fingerprint(1.0, _near_copy(rng, fps[src].hashes))
        pairs.add(tuple(sorted((src, dup))))
    return fps, pairs


def bench_matching(versions: int, frames: int, planted: int, brute: int) -> None:
    fps, truth = corpus(versions, frames, planted)
    print(
        f"(b) near-duplicate matching: {len(fps)} fingerprints x {frames} frames "
        f"({planted} planted near-duplicates), threshold {THRESHOLD}"
    )
    t0 = time.perf_counter()
    index = FingerprintIndex()
    for key, fp in fps.items():
        index.add(key, fp)
    t1 = time.perf_counter()
    cands = index.candidates()
    t2 = time.perf_counter()
    found = [(a, b, s) for a, b in cands if (s := similarity(fps[a], fps[b])) >= THRESHOLD]
    t3 = time.perf_counter()
    # The public entry point end to end (rebuilds its own index).
    t4 = time.perf_counter()
    public = near_duplicate_pairs(fps, THRESHOLD)
    t5 = time.perf_counter()
    assert {(a, b) for a, b, _ in public} == {(a, b) for a, b, _ in found}
    got = {(a, b) for a, b, _ in found}
    all_pairs = len(fps) * (len(fps) - 1) // 2
    rows = [
        ("index build", f"{t1 - t0:.2f} s"),
        ("candidate pairs", f"{len(cands)} ({len(cands) / all_pairs:.5%} of {all_pairs})"),
        ("candidates time", f"{t2 - t1:.2f} s"),
        ("exact scoring", f"{t3 - t2:.2f} s"),
        ("near_duplicate_pairs", f"{t5 - t4:.2f} s end to end"),
        ("recall (planted)", f"{len(got & truth)}/{len(truth)}"),
        ("extra pairs", f"{len(got - truth)}"),
    ]
    # The incremental path: 200 new versions (100 near-copies, 100 unrelated) queried
    # against the full index, each candidate scored.
    rng = random.Random(99)
    keys = sorted(fps)
    probes = [(True, Fingerprint(1.0, _near_copy(rng, fps[rng.choice(keys)].hashes)))
              for _ in range(100)]  # fmt: skip
    probes += [(False, Fingerprint(1.0, _walk(rng, frames))) for _ in range(100)]
    hits = 0
    t9 = time.perf_counter()
    for is_copy, fp in probes:
        matched = [k for k in index.query(fp) if similarity(fp, fps[k]) >= THRESHOLD]
        hits += bool(matched) == is_copy
    t10 = time.perf_counter()
    rows.append(
        ("query one new version", f"{(t10 - t9) / len(probes) * 1e3:.1f} ms "
         f"({hits}/{len(probes)} answered right)")
    )  # fmt: skip
    # Brute force on a subset: the first `brute` originals and the copies planted on them.
    subset_keys = {f"v{i:05d}" for i in range(brute)}
    subset_keys |= {b for a, b in truth if a in subset_keys}
    subset = {k: fps[k] for k in sorted(subset_keys)}
    n = len(subset)
    t6 = time.perf_counter()
    slow = brute_force_pairs(subset, THRESHOLD)
    t7 = time.perf_counter()
    fast = near_duplicate_pairs(subset, THRESHOLD)
    t8 = time.perf_counter()
    assert fast == slow, "index and all-pairs disagree on the subset"
    per_pair = (t7 - t6) / (n * (n - 1) // 2)
    rows += [
        (f"all pairs, {n} fp", f"{t7 - t6:.2f} s ({per_pair * 1e6:.0f} us/pair)"),
        (f"index, {n} fp", f"{t8 - t7:.2f} s (same {len(fast)} pairs)"),
        (f"all pairs, {len(fps)} fp", f"~{per_pair * all_pairs / 3600:.1f} h (extrapolated)"),
    ]
    for k, v in rows:
        print(f"  {k:<24} {v}")
    print(json.dumps({"versions": len(fps), "match_s": round(t5 - t4, 2)}))


def bench_catalog(checkpoints: list[int], frames: int, probes: int) -> None:
    import sqlite3
    from datetime import UTC, datetime

    from edvmp_pipeline.catalog import analysis_tables
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.domain.media_analysis import AnalysisRecord
    from edvmp_pipeline.domain.records import ObjectVersion
    from edvmp_pipeline.services.analysis import find_near_duplicates

    def version(pk: str) -> ObjectVersion:
        return ObjectVersion("/bench", f"{pk}.mp4", pk, 1, datetime(2026, 12, 1, tzinfo=UTC))

    def land(cat: Catalog, fps: dict[str, Fingerprint]) -> dict:
        analysed = [(pk, version(pk), AnalysisRecord(duration_s=float(frames),
                     video_stream_index=0, fingerprint=fp)) for pk, fp in fps.items()]  # fmt: skip
        cat.register([(pk, v) for pk, v, _ in analysed], "bench")
        analysis_tables.land_analysis(cat, analysed, run_id="bench")
        return {pk: (v, r.fingerprint) for pk, v, r in analysed}

    rng = random.Random(5)
    print(f"(c) the catalog's fingerprint index: lookups of one new version ({probes} per "
          f"checkpoint, half near-copies), {frames} frames per fingerprint")  # fmt: skip
    print(f"  {'held versions':>13} {'index rows':>12} {'files':>6} {'land':>9} "
          f"{'look up':>9} {'ratio':>6} {'right':>6}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edvmp-bench-") as tmp:
        cat = Catalog(Path(tmp) / "catalog").ensure()
        held: dict[str, Fingerprint] = {}
        first = None
        n_probe = 0
        for target in checkpoints:
            while len(held) < target:
                batch = {f"h{len(held) + i:07d}": Fingerprint(1.0, _walk(rng, frames))
                         for i in range(min(1000, target - len(held)))}  # fmt: skip
                land(cat, batch)
                held.update(batch)
            keys = sorted(held)
            right = 0
            landing = looking = 0.0
            for i in range(probes):
                copy = i % 2 == 0
                src = rng.choice(keys)
                fp = Fingerprint(1.0, _near_copy(rng, held[src].hashes) if copy
                                 else _walk(rng, frames))  # fmt: skip
                pk = f"p{n_probe:07d}"
                n_probe += 1
                t0 = time.perf_counter()
                landed = land(cat, {pk: fp})
                t1 = time.perf_counter()
                pairs = find_near_duplicates(cat, landed)
                t2 = time.perf_counter()
                landing += t1 - t0
                looking += t2 - t1
                right += ({p["duplicate_of"] for p in pairs} == {src}) if copy else not pairs
            per = looking / probes
            first = first or per
            with sqlite3.connect(cat.state.path) as con:
                n_rows = con.execute("SELECT count(*) FROM fingerprint_buckets").fetchone()[0]
            print(f"  {len(held):>13,} {n_rows:>12,} {cat.file_count():>6} "
                  f"{landing / probes * 1e3:>6.1f} ms {per * 1e3:>6.1f} ms {per / first:>5.2f}x "
                  f"{right:>3}/{probes}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", default="320x240,640x360,1280x720,1920x1080")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--planted", type=int, default=200)
    ap.add_argument("--brute", type=int, default=400)
    ap.add_argument("--skip-media", action="store_true")
    ap.add_argument("--skip-matching", action="store_true")
    ap.add_argument("--catalog-versions", default="1000,10000,100000")
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--skip-catalog", action="store_true")
    args = ap.parse_args()
    if not args.skip_media:
        bench_media(args.resolutions.split(","), args.seconds, args.repeat)
    if not args.skip_matching:
        bench_matching(args.versions, args.frames, args.planted, args.brute)
    if not args.skip_catalog:
        checkpoints = [int(x) for x in args.catalog_versions.split(",")]
        bench_catalog(checkpoints, args.frames, args.probes)


if __name__ == "__main__":
    main()
