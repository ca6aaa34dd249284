"""Shared fixtures: the generated media corpus (real files made by ffmpeg at test time)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline_tests.media_factory import MediaCorpus, build_corpus, ffmpeg_available


@pytest.fixture(scope="session")
def media_corpus(tmp_path_factory: pytest.TempPathFactory) -> MediaCorpus:
    """name → MediaCase(path, expected), generated once per session (about 2 s).

    Cases this ffmpeg cannot make are listed in ``media_corpus.skipped`` with the reason.
    """
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed")
    return build_corpus(tmp_path_factory.mktemp("media"))


# The S3 fixtures (s3_stack, s3_client, s3_bucket) start a real SeaweedFS server once per
# session, or use the one .ci/run started (EDVMP_S3_ENDPOINT_URL and AWS keys set).
pytest_plugins = ["edvmp_pipeline_tests.s3_server", "edvmp_pipeline_tests.dynamodb_server"]


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's sample library (5 good videos, 2 broken files), generated once."""
    folder = tmp_path_factory.mktemp("library")
    generate_samples(folder)
    return folder


@pytest.fixture
def library(sample_library: Path, tmp_path: Path) -> Path:
    """A private copy of the sample library: tests change files."""
    return Path(shutil.copytree(sample_library, tmp_path / "library"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh EDVMP_HOME (catalog and Dagster instance inside it), default settings."""
    monkeypatch.setenv("EDVMP_HOME", str(tmp_path / "home"))
    for name in (
        "DAGSTER_HOME",
        "EDVMP_CATALOG",
        "EDVMP_SUMMARIZER",
        "EDVMP_POLICY",
        "EDVMP_ANALYSIS",
        "EDVMP_ANALYSIS_IMAGES",
        "EDVMP_ANALYSIS_TIMEOUT_S",
    ):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path / "home"
    # get_instance() exports DAGSTER_HOME; do not leak it into the next test.
    os.environ.pop("DAGSTER_HOME", None)
