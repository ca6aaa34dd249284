"""``edvmp hash-password``: an argon2id hash of a password for ``EDVMP_API_USERS``.

Reads the password from stdin (one line) or, on a terminal, asks for it twice without echo;
prints only the hash, so ``edvmp hash-password < pw.txt`` fits in a script.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from edvmp_pipeline.domain.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``hash-password`` sub-command."""
    p = sub.add_parser(
        "hash-password",
        help="print an argon2id hash of a password (for the EDVMP_API_USERS file)",
        description="Read a password (stdin, or a no-echo prompt on a terminal) and print "
        "its argon2id hash for the password_hash of a user in the EDVMP_API_USERS file.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the hash of the password read."""
    from edvmp_pipeline.api.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0
