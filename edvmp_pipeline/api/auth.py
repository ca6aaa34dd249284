"""Who may call the API: users with argon2 password hashes, and signed, expiring tokens.

Users come from a YAML file (``EDVMP_API_USERS``)::

    users:
      alice:
        password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."   # edvmp hash-password
        role: admin        # optional: sees every job and incident, not only its own
      uploader-1:
        password_hash: "$argon2id$..."

Passwords are never stored, only argon2id hashes (``argon2-cffi``); a login with an unknown
user costs the same hash verification as one with a wrong password, so the answer time does
not tell which users exist. Tokens are HS256 JWTs (PyJWT) with ``sub``, ``role``, ``iat``,
``exp`` and a random ``jti``, signed with ``EDVMP_API_SECRET``; expiry is checked on every
request, with no leeway.
"""

from __future__ import annotations

import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edvmp_pipeline.domain.errors import ConfigError

ISSUER = "edvmp"
ALGORITHM = "HS256"
ROLES = ("user", "admin")
MAX_USERS_FILE_BYTES = 1024 * 1024
# Longer passwords only cost hashing time; 1 KiB is far past any passphrase.
MAX_PASSWORD_CHARS = 1024
MAX_USERNAME_CHARS = 64

_hasher = PasswordHasher()


class Unauthorized(Exception):
    """Credentials or token refused; the message is safe to return to the client."""


@dataclass(frozen=True)
class User:
    """One API user."""

    name: str
    password_hash: str
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Principal:
    """The caller a valid token names."""

    name: str
    role: str

    @property
    def owner_filter(self) -> str | None:
        """Whose jobs this caller sees: its own, or everyone's (None) for an admin."""
        return None if self.role == "admin" else self.name


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for the users file."""
    if not password:
        raise ConfigError("empty password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ConfigError(f"password longer than {MAX_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def _user(name: Any, entry: Any, source: str) -> User:
    if not isinstance(name, str) or not name or len(name) > MAX_USERNAME_CHARS:
        raise ConfigError(f"{source}: user names are 1..{MAX_USERNAME_CHARS} characters")
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: user {name!r} must be a mapping with password_hash")
    unknown = set(entry) - {"password_hash", "role"}
    if unknown:
        raise ConfigError(f"{source}: user {name!r}: unknown keys {sorted(map(str, unknown))}")
    hashed = entry.get("password_hash")
    if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
        raise ConfigError(
            f"{source}: user {name!r}: password_hash must be an argon2 hash "
            "(make one with: edvmp hash-password)"
        )
    role = entry.get("role", "user")
    if role not in ROLES:
        raise ConfigError(f"{source}: user {name!r}: role must be one of {', '.join(ROLES)}")
    return User(name=name, password_hash=hashed, role=role)


def load_users(path: Path) -> dict[str, User]:
    """Read and validate a users file; a ConfigError names what is wrong."""
    try:
        size = path.stat().st_size
        if size > MAX_USERS_FILE_BYTES:
            raise ConfigError(f"users file {path} is larger than {MAX_USERS_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"EDVMP_API_USERS: no such file: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"EDVMP_API_USERS: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"EDVMP_API_USERS: cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"EDVMP_API_USERS: {path} is not valid YAML ({exc})") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict) or not users:
        raise ConfigError(f"EDVMP_API_USERS: {path} needs a non-empty 'users:' mapping")
    return {name: _user(name, entry, str(path)) for name, entry in users.items()}


class Authenticator:
    """Checks passwords and issues and verifies tokens."""

    def __init__(self, users: dict[str, User], secret: str, token_ttl_s: int) -> None:
        self._users = users
        self._secret = secret
        self.token_ttl_s = token_ttl_s
        # Verified against when the user is unknown: the same work as a wrong password.
        self._decoy = _hasher.hash(secrets.token_urlsafe(16))

    def login(self, username: str, password: str) -> str:
        """A token for valid credentials; raises :class:`Unauthorized` otherwise."""
        # Compare names as the user typed them would look: NFC, so that "é" typed either
        # way is one user, but never case-folded.
        name = unicodedata.normalize("NFC", username)
        user = self._users.get(name)
        candidate = password if len(password) <= MAX_PASSWORD_CHARS else ""
        try:
            _hasher.verify(user.password_hash if user else self._decoy, candidate)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise Unauthorized("wrong username or password") from None
        if user is None:
            raise Unauthorized("wrong username or password")
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user.name,
            "role": user.role,
            "iat": now,
            "exp": now + self.token_ttl_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The caller a token names; raises :class:`Unauthorized` for a bad or expired one,
        or one of a user no longer in the users file."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired; log in again") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        user = self._users.get(claims.get("sub", ""))
        if user is None:
            raise Unauthorized("invalid token")
        # The role is the users file's now, not the one the token was issued with.
        return Principal(name=user.name, role=user.role)
