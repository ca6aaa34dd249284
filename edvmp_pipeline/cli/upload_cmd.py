"""``edvmp upload FILE [--key KEY]``: a presigned PUT into the uploads bucket.

Prints the job id (the partition key the object sensor will use) and nothing else on stdout,
so that ``JOB=$(edvmp upload clip.mp4)`` works; progress and messages go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import s3_endpoint_url, uploads_bucket, uploads_prefix

DEFAULT_EXPIRY_S = 3600


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``upload`` sub-command."""
    p = sub.add_parser(
        "upload",
        help="upload a video to $EDVMP_BUCKET through a presigned URL; prints the job id",
        description="Ask for a presigned PUT URL for $EDVMP_BUCKET (default uploads) on "
        "$EDVMP_S3_ENDPOINT_URL (AWS S3 when unset), upload FILE with a progress bar, and "
        "print the job id (the partition key the object sensor will use) on stdout. "
        "Follow it with `edvmp status JOB --wait`. Exit status: 0 uploaded; 2 bad usage, "
        "missing file, invalid key, unreachable endpoint, missing bucket or access denied.",
    )
    p.add_argument("file", help="the video file to upload")
    p.add_argument(
        "--key",
        help="object key in the bucket (default: the file's name); not empty, at most 1024 "
        "bytes of UTF-8, no control characters, no leading or trailing '/', no empty ('a//b'), "
        "'.' or '..' segments (servers would store another key than the job id names)",
    )
    p.add_argument(
        "--content-type",
        help="Content-Type to store (default: guessed from the file name, e.g. video/mp4)",
    )
    p.add_argument(
        "--expires",
        type=int,
        default=DEFAULT_EXPIRY_S,
        metavar="S",
        help=f"lifetime of the presigned URL in seconds (default {DEFAULT_EXPIRY_S})",
    )
    p.set_defaults(func=run)


def _warn_if_sensor_skips(key: str) -> bool:
    """Say so when the object sensor would never pick the key up (no job would appear);
    returns whether it would."""
    from edvmp_pipeline.domain.video_filter import parse_extensions, skip_reason

    skipped = False
    prefix = uploads_prefix()
    if prefix and not key.startswith(prefix):
        print(
            f"edvmp: warning: key {key!r} is outside EDVMP_PREFIX={prefix!r}; "
            "the object sensor will not see it",
            file=sys.stderr,
        )
        skipped = True
    reason = skip_reason(key, parse_extensions(os.environ.get("EDVMP_VIDEO_EXTENSIONS")))
    if reason is not None:
        print(
            f"edvmp: warning: the object sensor will skip {key!r} ({reason}); no job will run",
            file=sys.stderr,
        )
        skipped = True
    return skipped


def _shorten(text: str, limit: int = 160) -> str:
    """Keep messages one readable line even for a 1024-byte key."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def _check_bucket(client: object, bucket: str, endpoint: str) -> None:
    """Fail before sending any bytes when the endpoint is down or the bucket is missing.

    A 403 is not fatal here: an uploader may hold PutObject without ListBucket (which
    HeadBucket needs); the PUT itself then decides.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from edvmp_pipeline.domain.errors import AccessDenied, StoreUnreachable

    try:
        client.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigError(
                f"no such bucket: s3://{bucket} on {endpoint} "
                '(create it, or start the local stack: eval "$(edvmp stack up)")'
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            return
        raise ConfigError(f"cannot use bucket s3://{bucket}: {code}") from None
    except NoCredentialsError:
        raise AccessDenied(
            "no AWS credentials configured (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            'or eval "$(edvmp stack up)")'
        ) from None
    except BotoCoreError as exc:
        raise StoreUnreachable(f"S3 endpoint unreachable: {endpoint} ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Upload the file and print its job id; errors are one-line messages (exit 2)."""
    import boto3
    from botocore.config import Config
    from tqdm import tqdm

    from edvmp_pipeline.services.uploads import (
        guess_content_type,
        job_id_for,
        presign_upload,
        put_file,
        validate_object_key,
    )

    path = Path(args.file)
    if not path.exists():
        raise ConfigError(f"no such file: {path}")
    if not path.is_file():
        raise ConfigError(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"cannot read {path}: permission denied")
    # Before any client is built: a refused key must not depend on the endpoint being up.
    key = validate_object_key(args.key if args.key is not None else path.name)
    bucket = uploads_bucket()
    endpoint = s3_endpoint_url()
    uploads_prefix()  # a bad prefix is refused before anything is sent
    region = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # SigV4 explicitly: some botocore versions still presign with SigV2 by default, which
    # newer servers refuse. One quick attempt: a dead endpoint should fail in a second.
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            connect_timeout=5,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 1},
            # Local servers (SeaweedFS, MinIO) have no per-bucket DNS names.
            s3={"addressing_style": "path"} if endpoint else {},
        ),
    )
    _check_bucket(client, bucket, endpoint or "AWS S3")
    content_type = args.content_type or guess_content_type(path)
    upload = presign_upload(client, bucket, key, args.expires, content_type)
    sensor_skips = _warn_if_sensor_skips(key)

    size = path.stat().st_size
    what = _shorten(f"s3://{bucket}/{key}")
    started = time.monotonic()
    # disable=None: no bar when stderr is not a terminal (scripts, CI logs).
    with tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=path.name[:30],
        file=sys.stderr,
        disable=None,
        leave=False,
    ) as bar:
        etag = put_file(upload, path, what=what, on_progress=bar.update)
    elapsed = time.monotonic() - started
    job_id = job_id_for(bucket, key, etag)
    # Waiting on a job no sensor will start would only time out: name what would process it.
    follow = (
        f"only `edvmp ingest s3://{bucket}` would process it (then: edvmp status {job_id})"
        if sensor_skips
        else f"follow it with: edvmp status {job_id} --wait"
    )
    print(
        f"uploaded {what} ({size} bytes, ETag {etag}) in {elapsed:.2f} s; {follow}", file=sys.stderr
    )
    print(job_id)
    return 0
