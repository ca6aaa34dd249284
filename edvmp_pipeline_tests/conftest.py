"""Shared fixtures: the generated media corpus (real files made by ffmpeg at test time)."""

from __future__ import annotations

import pytest

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
pytest_plugins = ["edvmp_pipeline_tests.s3_server"]
