"""Ingest throughput: raw parallel ffprobe versus ``edvmp ingest`` over the same folder.

    .venv/bin/python benchmarks/ingest_throughput.py [--n 200] [--workers CORES]

Generates N small videos (ffmpeg lavfi), then times (a) ffprobe over every file with as
many parallel workers as cores — the practical limit — and (b) ``edvmp ingest`` of the same
folder as a subprocess (fresh EDVMP_HOME, so everything is new; one Dagster run), and prints
a table with both wall times and their ratio. ``--dagster-home`` runs the ingest on another
instance storage (a dagster.yaml naming Postgres, say). ``--in-memory`` adds a row for the
same ingest on Dagster's in-memory instance (``DagsterInstance.ephemeral()``): no event reaches
a disk, so the gap between the two rows is what the instance storage costs, and the gap to raw
ffprobe what is left of Dagster's event handling and of edvmp itself. Targets: within 1.25x of
raw ffprobe at 200 files, 1.1x at 1,000.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FFPROBE = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]


def make_videos(folder: Path, n: int) -> list[Path]:
    """One real clip, copied with a different trailing byte pattern so each is a new version."""
    seed = folder / "seed.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=1",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(seed),
        ],
        check=True,
    )
    data = seed.read_bytes()
    seed.unlink()
    paths = []
    lib = folder / "library"
    for i in range(n):
        p = lib / f"batch{i // 50:02d}" / f"clip_{i:04d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        # A free box after the moov makes each file's content (and hash) unique.
        free = (8 + 8).to_bytes(4, "big") + b"free" + i.to_bytes(8, "big")
        p.write_bytes(data + free)
        paths.append(p)
    return paths


def raw_ffprobe(paths: list[Path], workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda p: subprocess.run([*FFPROBE, str(p)], capture_output=True, check=True), paths
            )
        )
    return time.perf_counter() - start


def _timed(
    argv: list[str], home: Path, what: str, dagster_home: str | None = None
) -> tuple[float, str]:
    """Run ``argv`` with a fresh ``EDVMP_HOME`` (and ``DAGSTER_HOME`` only when given);
    return its wall time and output, or stop the benchmark with its error."""
    env = {**os.environ, "EDVMP_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    if dagster_home:
        env["DAGSTER_HOME"] = dagster_home
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}): {done.stderr}{done.stdout}")
    return elapsed, done.stdout


def edvmp_ingest(
    folder: Path, home: Path, workers: int, dagster_home: str | None = None
) -> tuple[float, str]:
    edvmp = Path(sys.executable).with_name("edvmp")
    argv = [str(edvmp), "ingest", str(folder), "--workers", str(workers)]
    return _timed(argv, home, "edvmp ingest", dagster_home)


def edvmp_ingest_in_memory(folder: Path, home: Path, workers: int) -> float:
    """The same ingest in a fresh process, with the runs on an in-memory Dagster instance."""
    argv = [sys.executable, __file__, "--in-memory-child", str(folder), "--workers", str(workers)]
    return _timed(argv, home, "in-memory ingest")[0]


def _in_memory_child(folder: str, workers: int) -> None:
    import dagster as dg

    from edvmp_pipeline.defs.in_process_runs import InProcessRuns
    from edvmp_pipeline.services.ingest import ingest

    report = ingest(
        folder, runs=InProcessRuns(given=dg.DagsterInstance.ephemeral()), workers=workers
    )
    if not report.all_ok or not report.processed:
        raise SystemExit(
            f"in-memory ingest: {len(report.failed)} failed of {len(report.processed)}"
        )


def _runs(out: str) -> str:
    """How many Dagster runs the ingest printed (``dagster runs: ID, ID``)."""
    line = next((x for x in out.splitlines() if x.startswith("dagster runs:")), "")
    n = len([r for r in line.removeprefix("dagster runs:").split(",") if r.strip()])
    return f"{n} run" if n == 1 else f"{n} runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--dagster-home",
        help="an existing DAGSTER_HOME (its dagster.yaml names the instance storage, e.g. "
        "Postgres); default: a fresh SQLite instance inside the temporary EDVMP_HOME",
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="also time the ingest on Dagster's in-memory instance (what the storage costs)",
    )
    parser.add_argument("--in-memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_memory_child:
        _in_memory_child(args.in_memory_child, args.workers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_videos(folder, args.n)
        raw_ffprobe(paths[:5], args.workers)  # warm the page cache and the binary
        raw = raw_ffprobe(paths, args.workers)
        home = folder / "home"
        ingest_s, out = edvmp_ingest(folder / "library", home, args.workers, args.dagster_home)
        again_s, again_out = edvmp_ingest(folder / "library", home, args.workers, args.dagster_home)
        memory_s = (
            edvmp_ingest_in_memory(folder / "library", folder / "home-in-memory", args.workers)
            if args.in_memory
            else None
        )
    rows = [
        ("raw ffprobe, parallel", args.n, args.workers, raw, 1.0),
        (f"edvmp ingest (all new, {_runs(out)})", args.n, args.workers, ingest_s, ingest_s / raw),
        ("edvmp ingest again (0 new)", args.n, args.workers, again_s, again_s / raw),
    ]
    if memory_s is not None:
        rows.append(("same, in-memory Dagster", args.n, args.workers, memory_s, memory_s / raw))
    print(f"{'what':<32} {'files':>6} {'workers':>8} {'wall s':>8} {'ms/file':>8} {'x raw':>6}")
    for name, n, w, secs, ratio in rows:
        print(f"{name:<32} {n:>6} {w:>8} {secs:>8.2f} {secs / n * 1000:>8.1f} {ratio:>6.2f}")
    assert "nothing new to process" in again_out, again_out
    print(out.splitlines()[2] if len(out.splitlines()) > 2 else out)


if __name__ == "__main__":
    main()
