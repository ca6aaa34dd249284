"""Where things live and how they are reached: one place that reads ``EDVMP_*`` variables.

Every setting has a local default, so ``edvmp ingest ./videos`` works with no configuration.
Dagster resources read the same variables through ``EnvVar`` in ``definitions.py``; this
module is for the CLI and for defaults that must agree with those.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.source_uri import is_bucket_name

# Versions per Dagster run for `edvmp ingest`: large enough that run start-up (~0.3 s
# in-process) is noise next to probing, small enough that progress is visible in the UI.
DEFAULT_BATCH_SIZE = 500

# Every float setting is a duration in seconds (a timeout, a delay); a week is more than any
# needs. The bound is not cosmetic: Python's timers overflow near 9.2e9 s (int64
# nanoseconds), so a larger timeout would fail each probe with OverflowError at run time.
MAX_SECONDS = 7 * 86_400.0


def edvmp_home() -> Path:
    """``EDVMP_HOME`` (default ``./.edvmp``), absolute; a ConfigError when it names
    something that is not a directory (a file in the way)."""
    home = Path(os.environ.get("EDVMP_HOME") or ".edvmp").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"EDVMP_HOME {home} is not a directory")
    return home


def catalog_location() -> str:
    """``EDVMP_CATALOG`` as given: a folder (default ``$EDVMP_HOME/catalog``) or an
    ``s3://bucket/prefix`` lake."""
    value = (os.environ.get("EDVMP_CATALOG") or "").strip()
    if value.startswith("s3://"):
        return value
    return str(catalog_root())


def catalog_root() -> Path:
    """The catalog's local folder: ``EDVMP_CATALOG`` when it is a folder (default
    ``$EDVMP_HOME/catalog``). With an ``s3://`` catalog the result tables are on S3 and this
    folder holds only what stays local (``state.sqlite`` unless the state is in DynamoDB)."""
    value = (os.environ.get("EDVMP_CATALOG") or "").strip()
    if value.startswith("s3://"):
        return lake_state_dir(value)
    if "://" in value:
        raise ConfigError(
            f"EDVMP_CATALOG={value!r}: a folder or an s3://bucket/prefix URL, no other scheme"
        )
    if value:
        return Path(value).expanduser().resolve()
    return edvmp_home() / "catalog"


def lake_state_dir(url: str) -> Path:
    """The local folder of an ``s3://`` catalog: one per lake, so that two lakes used from
    one home never share a ``state.sqlite``."""
    from urllib.parse import quote

    return edvmp_home() / "lakes" / quote(url.removeprefix("s3://").strip("/"), safe="")


def dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``$EDVMP_HOME/dagster``)."""
    value = os.environ.get("DAGSTER_HOME")
    return Path(value).expanduser().resolve() if value else edvmp_home() / "dagster"


def env_float(
    name: str, default: float, *, minimum: float = 0.0, maximum: float = MAX_SECONDS
) -> float:
    """A finite number greater than ``minimum`` and at most ``maximum`` from the environment,
    or a ConfigError naming the variable.

    float() reads "nan" and "inf" as numbers; neither is a usable timeout or delay (a NaN
    compares false with every bound, so it would pass the range check and then fail every
    probe at run time), so they are refused here, at start-up.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if value <= minimum:
        raise ConfigError(f"{name}={raw!r} must be greater than {minimum:g}")
    if value > maximum:
        raise ConfigError(f"{name}={raw!r} must be at most {maximum:g}")
    return value


def env_int(name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``minimum..maximum`` from the environment, or a ConfigError naming the
    variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be at most {maximum}")
    return value


def probe_workers_default() -> int:
    """Parallel ffprobe processes: one per core (more do not help, see ARCHITECTURE.md)."""
    return max(1, os.cpu_count() or 1)


# -- the HTTP API (edvmp serve) ------------------------------------------------------------
# HS256 keys shorter than the hash are guessable offline from one token (RFC 7518 3.2).
MIN_API_SECRET_BYTES = 32
MAX_TOKEN_TTL_S = 86_400
MAX_UPLOAD_EXPIRY_S = 7 * 86_400
SINGLE_PUT_LIMIT_BYTES = 5 * 1024**3


def api_secret() -> str | None:
    """``EDVMP_API_SECRET``: the key that signs API tokens (None when unset); a ConfigError
    when it is shorter than :data:`MIN_API_SECRET_BYTES` bytes."""
    value = os.environ.get("EDVMP_API_SECRET")
    if value is None or value == "":
        return None
    if len(value.encode("utf-8")) < MIN_API_SECRET_BYTES:
        raise ConfigError(
            f"EDVMP_API_SECRET is {len(value.encode('utf-8'))} bytes; use at least "
            f"{MIN_API_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
        )
    return value


def api_users_file() -> Path | None:
    """``EDVMP_API_USERS``: the YAML file of API users and their password hashes."""
    value = os.environ.get("EDVMP_API_USERS")
    return Path(value).expanduser() if value else None


def api_token_ttl_s() -> int:
    """``EDVMP_API_TOKEN_TTL_S``: lifetime of a login token (default 3600, at most a day)."""
    return env_int("EDVMP_API_TOKEN_TTL_S", 3600, minimum=1, maximum=MAX_TOKEN_TTL_S)


def api_upload_expiry_s() -> int:
    """``EDVMP_API_UPLOAD_EXPIRY_S``: lifetime of an upload URL (default 900 s)."""
    return env_int("EDVMP_API_UPLOAD_EXPIRY_S", 900, minimum=1, maximum=MAX_UPLOAD_EXPIRY_S)


def api_max_upload_bytes() -> int:
    """``EDVMP_API_MAX_UPLOAD_BYTES``: the largest declared upload (default and ceiling:
    S3's 5 GiB for one PUT)."""
    return env_int(
        "EDVMP_API_MAX_UPLOAD_BYTES",
        SINGLE_PUT_LIMIT_BYTES,
        minimum=1,
        maximum=SINGLE_PUT_LIMIT_BYTES,
    )


def s3_endpoint_url() -> str | None:
    """``EDVMP_S3_ENDPOINT_URL`` (default none: AWS S3), an http(s) URL; a ConfigError for
    anything else, before a client is built (boto3 would fail each request with a
    ValueError)."""
    value = (os.environ.get("EDVMP_S3_ENDPOINT_URL") or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"EDVMP_S3_ENDPOINT_URL={value!r} is not an http(s) URL with a host and an optional "
            "port (e.g. http://127.0.0.1:8333)"
        )
    return value


def uploads_bucket() -> str:
    """``EDVMP_BUCKET`` (default ``uploads``): the bucket the object sensor watches and
    the API uploads into; a ConfigError when it is not a valid S3 bucket name."""
    value = os.environ.get("EDVMP_BUCKET") or "uploads"
    if not is_bucket_name(value):
        raise ConfigError(
            f"EDVMP_BUCKET={value!r} is not a valid S3 bucket name (3-63 characters: lower-case "
            "letters, digits, dots and hyphens)"
        )
    return value


def uploads_prefix() -> str:
    """``EDVMP_PREFIX`` (default empty): the key prefix the object sensor watches and the
    API uploads under; a ConfigError for a prefix no upload key could carry."""
    value = os.environ.get("EDVMP_PREFIX", "")
    if value.startswith("/") or "//" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(
            f"EDVMP_PREFIX={value!r} must not start with '/' or contain '//' or control "
            "characters (e.g. incoming/)"
        )
    return value


def video_extensions_text() -> str | None:
    """``EDVMP_VIDEO_EXTENSIONS`` as written (``video_filter.parse_extensions`` reads it)."""
    return os.environ.get("EDVMP_VIDEO_EXTENSIONS")


# -- the state store -----------------------------------------------------------------------
STATE_BACKENDS = ("sqlite", "dynamodb")


def state_backend() -> str:
    """``EDVMP_STATE``: ``sqlite`` (default, next to the catalog) or ``dynamodb``."""
    value = (os.environ.get("EDVMP_STATE") or "sqlite").strip().lower()
    if value not in STATE_BACKENDS:
        raise ConfigError(f"EDVMP_STATE={value!r} must be one of {', '.join(STATE_BACKENDS)}")
    return value


def dynamodb_table_prefix() -> str:
    """``EDVMP_DYNAMODB_TABLE_PREFIX`` (default ``edvmp-``): tables ``<prefix>versions`` …"""
    value = os.environ.get("EDVMP_DYNAMODB_TABLE_PREFIX", "edvmp-")
    if not all(c.isalnum() or c in "_.-" for c in value) or len(value) > 200:
        raise ConfigError(
            f"EDVMP_DYNAMODB_TABLE_PREFIX={value!r}: table names allow only letters, digits, "
            "'_', '-' and '.'"
        )
    return value


def dynamodb_endpoint_url() -> str | None:
    """``EDVMP_DYNAMODB_ENDPOINT_URL``: a DynamoDB-compatible server (unset: AWS). With it
    the store creates its tables when absent; on AWS they come from the Terraform."""
    return os.environ.get("EDVMP_DYNAMODB_ENDPOINT_URL") or None


# -- the video analysis ----------------------------------------------------------------------
ANALYSIS_IMAGE_KINDS = ("poster", "contact_sheet")
_ON = {"on", "1", "true", "yes"}
_OFF = {"off", "0", "false", "no", ""}


def analysis_enabled() -> bool:
    """``EDVMP_ANALYSIS``: ``on`` adds the ``video_analysis`` asset (one ffmpeg decode of
    every video: it costs real CPU), ``off`` (default) leaves it out."""
    raw = os.environ.get("EDVMP_ANALYSIS") or ""
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(f"EDVMP_ANALYSIS={raw!r} must be on or off")


def analysis_images() -> tuple[str, ...]:
    """``EDVMP_ANALYSIS_IMAGES``: which pictures the analysis stores next to the catalog,
    comma-separated from ``poster`` and ``contact_sheet`` (default ``poster``; ``none``)."""
    raw = os.environ.get("EDVMP_ANALYSIS_IMAGES")
    if raw is None or raw.strip() == "":
        return ("poster",)
    parts = [p.strip().lower() for p in raw.split(",") if p.strip()]
    if parts == ["none"]:
        return ()
    unknown = [p for p in parts if p not in ANALYSIS_IMAGE_KINDS]
    if unknown or not parts:
        raise ConfigError(
            f"EDVMP_ANALYSIS_IMAGES={raw!r}: a comma-separated list of "
            f"{', '.join(ANALYSIS_IMAGE_KINDS)}, or none"
        )
    return tuple(k for k in ANALYSIS_IMAGE_KINDS if k in parts)
