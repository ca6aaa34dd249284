"""Object keys: which keys are accepted, and how a local file name becomes one.

Two rule sets live here, both pure:

* :func:`validate_object_key`: what a client may ask to upload. A key S3 servers would
  rewrite (``a//b`` stored as ``a/b`` and ``a\\b`` stored as ``a/b`` by SeaweedFS, ``./``
  and ``../`` resolved by HTTP clients) is refused, because the job id is derived from the
  key the client asked for and would never exist under the key the server stored.

* :func:`folder_object_key` / :func:`escaped_key_bytes`: how a file of a local folder is
  named in the catalog. A key must be valid UTF-8 text (Parquet, SQLite and Dagster tags all
  refuse anything else), while a POSIX file name is any bytes. Choice: a name that is valid
  UTF-8 is its own key, unchanged (every key catalogued so far stays the same); a name that
  is not has each undecodable byte written as ``%XX`` (upper-case hex) and each ``%`` as
  ``%25``, so ``bad_\\xff.mp4`` becomes ``bad_%FF.mp4`` and the bytes can be recovered to
  open the file. Because valid names are left alone, a valid name can spell out exactly the
  escaped form of an invalid one (a file literally called ``bad_%FF.mp4`` next to
  ``bad_\\xff.mp4``); the folder listing reports the escaped one as skipped in that case, and
  opening a key tries the literal name first, so each key names one file.
"""

from __future__ import annotations

import re
import unicodedata

from edvmp_pipeline.domain.errors import ConfigError

# S3's limit on key length, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
# Unicode categories that end or hide a line: control characters, line/paragraph separators.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
_SHOWN_MAX = 80


class InvalidObjectKey(ConfigError):
    """An object key S3 would refuse, or that would be unusable later."""


def _shown(key: str) -> str:
    """The key as a one-line, bounded quotation for messages (repr escapes controls)."""
    text = repr(key)
    if len(text) <= _SHOWN_MAX:
        return text
    half = (_SHOWN_MAX - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def _tidied(key: str) -> str | None:
    """The key without empty and ``.`` segments, when that is an unambiguous fix."""
    parts = key.replace("\\", "/").split("/")
    if ".." in parts:
        return None
    kept = [p for p in parts if p not in ("", ".")]
    return "/".join(kept) or None


def _refuse(key: str, why: str) -> InvalidObjectKey:
    fix = _tidied(key)
    hint = f"; use {_shown(fix)}" if fix and fix != key else ""
    return InvalidObjectKey(f"invalid object key {_shown(key)}: {why}{hint}")


def validate_object_key(key: str) -> str:
    """Return ``key`` unchanged if it is acceptable, else raise :class:`InvalidObjectKey`.

    Rules: not empty; at most 1024 bytes of UTF-8; valid UTF-8; no control characters or
    line separators (invisible in listings, logs and the UI, and refused by some servers);
    no backslash, no leading or trailing ``/``, no empty segment (``a//b``) and no ``.`` or
    ``..`` segment, since servers and HTTP clients rewrite those into another key. The message
    suggests the tidied key when there is an obvious one.
    """
    if not key:
        raise InvalidObjectKey("invalid object key: empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        # A file name that is not valid UTF-8 arrives as lone surrogates (surrogateescape).
        raise InvalidObjectKey(
            f"invalid object key {_shown(key)}: not valid UTF-8 (pass --key with a UTF-8 name)"
        ) from None
    if size > MAX_KEY_BYTES:
        raise InvalidObjectKey(
            f"invalid object key: {size} bytes of UTF-8, at most {MAX_KEY_BYTES} allowed"
        )
    for ch in key:
        if unicodedata.category(ch) in _LINE_BREAKING:
            raise InvalidObjectKey(
                f"invalid object key {_shown(key)}: control character U+{ord(ch):04X}"
            )
    if "\\" in key:
        # SeaweedFS (the local store) keeps ``a\\b`` as ``a/b``; AWS keeps it. A Windows path
        # sent as a file name is the usual source, and '/' is what the uploader meant.
        raise _refuse(key, "backslash; the store would keep another key ('\\' as '/')")
    if key.startswith("/"):
        raise _refuse(key, "must not start with '/'")
    if key.endswith("/"):
        raise _refuse(key, "must not end with '/' (that names a folder, not an object)")
    parts = key.split("/")
    if "" in parts:
        raise _refuse(key, "empty segment ('//'); the store would keep another key")
    if "." in parts or ".." in parts:
        raise _refuse(key, "'.' or '..' segment; the store would keep another key")
    return key


def folder_object_key(relpath: bytes) -> str:
    """The object key of a file at ``relpath`` (bytes, ``/``-separated, relative to the
    folder): the name itself when it is valid UTF-8, else escaped (see the module doc)."""
    try:
        return relpath.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out = []
    for ch in relpath.decode("utf-8", "surrogateescape"):
        if "\udc80" <= ch <= "\udcff":
            out.append(f"%{ord(ch) - 0xDC00:02X}")
        elif ch == "%":
            out.append("%25")
        else:
            out.append(ch)
    return "".join(out)


def escaped_key_bytes(key: str) -> bytes | None:
    """The file name bytes an escaped key stands for, or None when ``key`` cannot be one
    (no ``%XX``, a ``%`` not followed by two upper-case hex digits, or the bytes are valid
    UTF-8, which would never have been escaped)."""
    if "%" not in key or key.count("%") != len(_ESCAPE.findall(key)):
        return None
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(key):
        raw += key[pos : match.start()].encode("utf-8")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += key[pos:].encode("utf-8")
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)
    return None
