"""Partition keys for object versions.

One dynamic partition per object *version*. A key must be valid everywhere in Dagster:
no ``,`` ``[`` ``]`` (the UI and backfills split on them), no ``/`` (path IO managers), no
``...`` (range syntax), no spaces or control characters. It must also be unique per
(source, key, ETag) even on case-insensitive file systems, stable across runs and readable
enough to recognise the object in the UI.

Shape: ``<readable slug>~<etag prefix>~<digest>`` where the slug is the object key (NFC) with
every character that is not a letter, digit, ``.``, ``_`` or ``-`` turned into ``_`` (letters
of any script stay, so a Japanese file name stays readable; runs collapsed, at most
:data:`SLUG_MAX` characters, keeping the end of the key: the file name is the recognisable
part), and the digest is a SHA-256 prefix of source, key and ETag. The digest carries the
uniqueness; the slug is only for humans. The mapping back to (source, key, ETag) lives in the
catalog's ``objects`` table and in run tags, so it is reversible without being decodable.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

SLUG_MAX = 60
ETAG_PREFIX = 8
DIGEST_HEX = 16
_UNSAFE = re.compile(r"[^\w.-]+")
_DOTS = re.compile(r"\.{2,}")
KEY_PATTERN = re.compile(
    rf"^[\w.-]{{1,{SLUG_MAX}}}~[A-Za-z0-9]{{1,{ETAG_PREFIX}}}~[0-9a-f]{{{DIGEST_HEX}}}$"
)


def _slug(object_key: str) -> str:
    slug = _UNSAFE.sub("_", unicodedata.normalize("NFC", object_key))
    # ".." and "..." are not harmful in a slug but "..." is Dagster's range separator.
    slug = _DOTS.sub(".", slug).strip("._-") or "object"
    if len(slug) > SLUG_MAX:
        slug = slug[-SLUG_MAX:].lstrip("._-") or "object"
    return slug


def normalise_etag(etag: str) -> str:
    """An S3 ETag as the catalog keeps it: quotes stripped; a multipart ``…-N`` ETag is kept
    whole, as an opaque string (it is not an MD5 of the content)."""
    return etag.strip().strip('"')


def version_digest(source: str, object_key: str, etag: str) -> str:
    """A stable hex digest of one object version's identity."""
    raw = "\x00".join((source, object_key, etag)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:DIGEST_HEX]


def partition_key_for(source: str, object_key: str, etag: str) -> str:
    """The Dagster partition key of one object version."""
    etag_part = re.sub(r"[^A-Za-z0-9]", "", etag)[:ETAG_PREFIX] or "noetag"
    return f"{_slug(object_key)}~{etag_part}~{version_digest(source, object_key, etag)}"


def is_valid_partition_key(key: str) -> bool:
    """True when ``key`` has the shape :func:`partition_key_for` produces."""
    return bool(KEY_PATTERN.match(key))
