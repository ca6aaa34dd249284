"""Hostile folder entries under ``edvmp ingest FOLDER`` (review issue 10, item 3).

Every entry is either an object (catalogued, or FAILED on its own with a class and an
incident) or a reported skip with its reason; none aborts the ingest with exit 3. Real
ffprobe, real Dagster instance, real file-system conditions (nothing patched).

"Unreadable" needs a caller the permission bits apply to. Root bypasses them through the
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH capabilities, so as root the ingest runs with those
two dropped from its bounding set (a real, unprivileged-for-reading process, not a mock);
the test is skipped only where even that is impossible.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edvmp_pipeline.adapters.content_hash import ContentHashCache, hash_file
from edvmp_pipeline.adapters.object_store import (
    SKIP_KEY_COLLISION,
    UNREADABLE_ETAG_PREFIX,
    ObjectStoreResource,
    list_folder,
)
from edvmp_pipeline.domain.errors import AccessDenied, ObjectMissing
from edvmp_pipeline.domain.object_keys import escaped_key_bytes, folder_object_key
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline_tests.cli_support import catalog_at, run_edvmp

BAD_NAME = b"bad_\xff.mp4"
BAD_DIR = b"dir_\xfe"


def _write_named(parent: Path, name: bytes, data: bytes) -> None:
    """Create ``parent/name`` where ``name`` need not be UTF-8."""
    fd = os.open(os.fsencode(parent) + b"/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _jobs(home: Path) -> dict[str, tuple[str, str | None, str | None]]:
    _, rows = catalog_at(home).query("SELECT object_key, status, error_class, error FROM jobs")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _skip_lines(stdout: str) -> dict[str, str]:
    """``key: reason`` lines of the report's ``skipped:`` block."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("skipped: "))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line.strip())
    return dict(line.split(": ", 1) for line in block)


def _atime_is_recorded(tmp: Path) -> bool:
    """Whether this file system updates atime on a read of a file whose atime is old."""
    probe = tmp / "atime_probe"
    probe.write_bytes(b"x" * 64)
    os.utime(probe, (0, probe.stat().st_mtime))
    probe.read_bytes()
    return probe.stat().st_atime != 0


@pytest.fixture
def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "EDVMP_HOME": str(home)}


@pytest.fixture
def hostile(library: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A folder of good videos under awkward names, next to entries that are not objects.

    Returns (folder, the file outside it that a symlink points at).
    """
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    secret = outside_dir / "secret.mp4"
    shutil.copyfile(library / "ugc/phone_portrait.mp4", secret)
    # atime 0: any read of the file (hash, probe) moves it on a relatime file system.
    os.utime(secret, (0, secret.stat().st_mtime))

    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copyfile(library / "marketing/launch_teaser.mp4", folder / "good.mp4")
    _write_named(folder, BAD_NAME, (library / "ugc/phone_portrait.mp4").read_bytes())
    os.mkdir(os.fsencode(folder) + b"/" + BAD_DIR)
    _write_named(
        folder / os.fsdecode(BAD_DIR),
        b"100%.mov",
        (library / "training/ntsc_lecture.mov").read_bytes(),
    )
    (folder / "inside_link.mp4").symlink_to("good.mp4")
    (folder / "loop_a.mp4").symlink_to("loop_b.mp4")
    (folder / "loop_b.mp4").symlink_to("loop_a.mp4")
    (folder / "self.mp4").symlink_to("self.mp4")
    (folder / "to_root").symlink_to(".")
    (folder / "outside.mp4").symlink_to(secret)
    (folder / "outside_dir").symlink_to(outside_dir)
    (folder / "dangling.mp4").symlink_to("nowhere.mp4")
    os.mkfifo(folder / "x.mp4")
    return folder, secret


HOSTILE_SKIPS = {
    "dangling.mp4": "broken symlink",
    "loop_a.mp4": "symlink loop",
    "loop_b.mp4": "symlink loop",
    "outside.mp4": "symlink leaves the source folder",
    "outside_dir": "symlink leaves the source folder",
    "self.mp4": "symlink loop",
    "to_root": "symlink to a folder (not followed)",
    "x.mp4": "not a regular file (FIFO)",
}
HOSTILE_OBJECTS = {"good.mp4", "bad_%FF.mp4", "dir_%FE/100%25.mov", "inside_link.mp4"}


def test_hostile_entries_are_objects_or_reported_skips(
    hostile: tuple[Path, Path], home: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder, secret = hostile
    done = run_edvmp("ingest", str(folder), env=cli_env)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert "processed 4: succeeded 4, failed 0" in done.stdout, done.stdout
    assert f"skipped: {len(HOSTILE_SKIPS)} (" in done.stdout
    assert _skip_lines(done.stdout) == HOSTILE_SKIPS

    # The non-UTF-8 names are catalogued under escaped, valid UTF-8 keys, and were read
    # through them (the originals' metadata: a portrait phone clip rotated 90°, the NTSC
    # lecture at 29.97 fps).
    assert _jobs(home) == {k: ("SUCCEEDED", None, None) for k in HOSTILE_OBJECTS}
    _, rows = catalog_at(home).query(
        "SELECT object_key, width, rotation, round(fps, 3) FROM videos"
    )
    probed = {r[0]: r[1:] for r in rows}
    assert probed["bad_%FF.mp4"] == (320, 90, 30.0)
    assert probed["dir_%FE/100%25.mov"][2] == 29.97
    assert probed["inside_link.mp4"] == probed["good.mp4"] == (640, 0, probed["good.mp4"][2])

    # The file behind the escaping symlink was never hashed, probed or even read.
    with sqlite3.connect(home / "content_hashes.sqlite") as db:
        cached = [r[0] for r in db.execute("SELECT path FROM content_hash")]
    assert not [p for p in cached if "outside" in p or "secret" in p], cached
    assert any(p.startswith("bytes:") for p in cached), cached  # the non-UTF-8 paths
    if _atime_is_recorded(tmp_path):
        assert secret.stat().st_atime == 0

    # A second pass: nothing new, same report of skips, every hash from the cache.
    again = run_edvmp("ingest", str(folder), env=cli_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "listed 4: new 0, already catalogued (skipped) 4" in again.stdout
    assert _skip_lines(again.stdout) == HOSTILE_SKIPS
    with ContentHashCache(home / "content_hashes.sqlite") as cache:
        listing = list_folder(folder.resolve(), cache)
        assert (cache.hits, cache.misses) == (4, 0)
    assert {v.object_key for v in listing.versions} == HOSTILE_OBJECTS


def test_register_lists_the_same_skips_on_stderr(
    hostile: tuple[Path, Path], home: Path, cli_env: dict[str, str]
) -> None:
    folder, _ = hostile
    done = run_edvmp("register", str(folder), env=cli_env)
    assert done.returncode == 0, done.stdout + done.stderr
    # stdout stays partition keys only (scripts feed it to Dagster's CLI).
    assert len(done.stdout.split()) == len(HOSTILE_OBJECTS), done.stdout
    skipped = {
        line.removeprefix("skipped ").split(": ", 1)[0]: line.split(": ", 1)[1]
        for line in done.stderr.splitlines()
        if line.startswith("skipped ")
    }
    assert set(skipped) == set(HOSTILE_SKIPS), done.stderr
    assert all(HOSTILE_SKIPS[k] in why for k, why in skipped.items()), done.stderr


# --- unreadable files and folders ------------------------------------------------------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def _drop_dac_capabilities() -> None:
    """In the child before exec: without these two, root obeys permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_unprivileged(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Like ``run_edvmp``, but as a process that permission bits apply to."""
    exe = Path(sys.executable).with_name("edvmp")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None,
    )


@pytest.fixture
def locked(library: Path, tmp_path: Path) -> Iterator[Path]:
    """A folder with a good video, an unreadable file, a subfolder that cannot be listed and
    one that can be listed but not searched (names without sizes)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    shutil.copyfile(library / "marketing/launch_teaser.mp4", folder / "good.mp4")
    shutil.copyfile(library / "ugc/phone_portrait.mp4", folder / "unreadable.mp4")
    (folder / "closed").mkdir()
    shutil.copyfile(library / "ugc/phone_portrait.mp4", folder / "closed/hidden_from_us.mp4")
    (folder / "noexec").mkdir()
    shutil.copyfile(library / "training/ntsc_lecture.mov", folder / "noexec/clip.mov")
    (folder / "unreadable.mp4").chmod(0)
    (folder / "closed").chmod(0)
    (folder / "noexec").chmod(0o444)
    try:
        check = _run_unprivileged("--help", env=dict(os.environ))
    except subprocess.SubprocessError as exc:
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here: {exc}")
    if check.returncode != 0:
        pytest.skip(f"cannot run edvmp without DAC capabilities: {check.stderr.strip()}")
    try:
        yield folder
    finally:
        (folder / "unreadable.mp4").chmod(0o644)
        (folder / "closed").chmod(0o755)
        (folder / "noexec").chmod(0o755)


def test_unreadable_file_fails_on_its_own_and_unreadable_folder_is_reported(
    locked: Path, home: Path, cli_env: dict[str, str]
) -> None:
    done = _run_unprivileged("ingest", str(locked), env=cli_env)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert "processed 2: succeeded 1, failed 1" in done.stdout, done.stdout
    assert _skip_lines(done.stdout) == {
        "closed": "folder not listed (Permission denied)",
        "noexec/clip.mov": "cannot stat (Permission denied)",
    }
    # No version failed for these two, but exit 0 would claim the whole folder is catalogued.
    assert "incomplete: 2 entries could not be listed" in done.stdout
    shown = f"{locked.resolve()}/unreadable.mp4"
    assert f"  unreadable.mp4: [access_denied] cannot read {shown}: permission denied" in (
        done.stdout
    )

    jobs = _jobs(home)
    assert jobs == {
        "good.mp4": ("SUCCEEDED", None, None),
        "unreadable.mp4": ("FAILED", "access_denied", f"cannot read {shown}: permission denied"),
    }
    cat = catalog_at(home)
    _, rows = cat.query('SELECT object_key, "class", status FROM incidents')
    assert rows == [("unreadable.mp4", "access_denied", "OPEN")]
    _, rows = cat.query("SELECT etag FROM objects WHERE object_key = 'unreadable.mp4'")
    assert rows[0][0].startswith(UNREADABLE_ETAG_PREFIX)

    # Readable again: its content is a new version that succeeds, the folder is listed.
    for path, mode in (("unreadable.mp4", 0o644), ("closed", 0o755), ("noexec", 0o755)):
        (locked / path).chmod(mode)
    fixed = _run_unprivileged("ingest", str(locked), env=cli_env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "skipped: " not in fixed.stdout
    assert "processed 3: succeeded 3, failed 0" in fixed.stdout


def test_unlistable_source_folder_is_a_usage_error(
    locked: Path, home: Path, cli_env: dict[str, str]
) -> None:
    done = _run_unprivileged("ingest", str(locked / "closed"), env=cli_env)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.strip() == (
        f"edvmp: error: cannot list folder {locked.resolve() / 'closed'}: Permission denied"
    )


# --- the pieces, directly ----------------------------------------------------------------------


def test_folder_keys_keep_utf8_names_and_escape_the_rest_reversibly() -> None:
    # Valid names are their own keys, "%" and all: keys catalogued so far do not change.
    for name in ("a b/動画.mp4", "100%.mp4", "caf%C3%A9.mp4", "x%FF.mp4"):
        assert folder_object_key(name.encode()) == name
    cases = {
        b"bad_\xff.mp4": "bad_%FF.mp4",
        b"dir_\xfe/100%.mov": "dir_%FE/100%25.mov",
        "é_".encode() + b"\xe9.mp4": "é_%E9.mp4",
        b"\xc3(": "%C3(",
    }
    for raw, key in cases.items():
        assert folder_object_key(raw) == key
        key.encode("utf-8")  # valid text for Parquet, SQLite and Dagster tags
        assert escaped_key_bytes(key) == raw
    # Keys that no undecodable name produces are never read as escapes.
    for plain in ("100%.mp4", "caf%C3%A9.mp4", "100%25.mp4", "a%ff.mp4", "%F", "50%%FF"):
        assert escaped_key_bytes(plain) is None


def test_escaped_key_that_is_another_files_name_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "clash"
    folder.mkdir()
    (folder / "bad_%FF.mp4").write_bytes(b"literal")
    _write_named(folder, BAD_NAME, b"undecodable")
    with ContentHashCache(tmp_path / "hashes.sqlite") as cache:
        listing = list_folder(folder, cache)
    assert [v.object_key for v in listing.versions] == ["bad_%FF.mp4"]
    assert [(e.key, e.reason) for e in listing.skipped] == [("bad_%FF.mp4", SKIP_KEY_COLLISION)]
    target = ObjectStoreResource().probe_target(listing.versions[0])
    assert target.leading_bytes == b"literal"


def _version(folder: Path, key: str, size: int, etag: str = "e") -> ObjectVersion:
    return ObjectVersion(str(folder), key, etag, size, datetime.now(UTC))


def test_probe_target_does_not_wait_on_a_fifo_swapped_in_after_listing(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "clip.mp4")
    outcome: list[BaseException | object] = []

    def probe() -> None:
        try:
            outcome.append(ObjectStoreResource().probe_target(_version(tmp_path, "clip.mp4", 10)))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():
        # Unblock the reader so the thread ends, then fail: open() waited for a writer.
        with open(tmp_path / "clip.mp4", "wb"):
            pass
        worker.join(timeout=10)
        pytest.fail("probe_target blocked opening a FIFO")
    assert isinstance(outcome[0], ObjectMissing), outcome
    assert "no longer a regular file" in str(outcome[0])


def test_probe_target_refuses_a_symlink_out_of_the_folder_made_after_listing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"secret bytes")
    (folder / "clip.mp4").symlink_to(outside)
    with pytest.raises(ObjectMissing, match="leaves the source folder"):
        ObjectStoreResource().probe_target(_version(folder, "clip.mp4", 12))


def test_probe_target_of_an_unreadable_listing(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"now readable")
    version = _version(tmp_path, "clip.mp4", 12, etag=f"{UNREADABLE_ETAG_PREFIX}12-1")
    with pytest.raises(ObjectMissing, match="could not be read when it was listed"):
        ObjectStoreResource().probe_target(version)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files (covered above)")
def test_probe_target_of_a_file_without_read_permission(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"bytes")
    clip.chmod(0)
    try:
        with pytest.raises(AccessDenied, match="permission denied"):
            ObjectStoreResource().probe_target(_version(tmp_path, "clip.mp4", 5))
    finally:
        clip.chmod(0o644)


def test_hashing_reads_the_listed_size_and_no_more(tmp_path: Path) -> None:
    """A pseudo-file that reports 0 bytes but streams (/proc) cannot keep the listing
    reading: `edvmp ingest /proc/self` used to hang."""
    import hashlib

    empty = hashlib.blake2b(b"", digest_size=16).hexdigest()
    status = Path("/proc/self/status")
    if status.is_file() and status.stat().st_size == 0:
        assert status.read_bytes()  # it does stream content
        assert hash_file(status) == empty
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"x" * 3_000_000)
    assert hash_file(clip) == hashlib.blake2b(b"x" * 3_000_000, digest_size=16).hexdigest()
