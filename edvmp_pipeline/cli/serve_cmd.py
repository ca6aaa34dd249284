"""``edvmp serve [--host H] [--port P] [--dev]``: the jobs HTTP API and ``/metrics``.

Refuses to start without ``EDVMP_API_SECRET`` (at least 32 bytes) and ``EDVMP_API_USERS``,
unless ``--dev``: then a secret is generated for this process (tokens die with it) and, when
no users file is set, a ``dev`` user with a random password, both announced on stderr.
"""

from __future__ import annotations

import argparse
import errno
import secrets
import socket
import sys

from edvmp_pipeline.domain.errors import ConfigError

DEFAULT_PORT = 8000


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``serve`` sub-command."""
    p = sub.add_parser(
        "serve",
        help="serve the jobs HTTP API and /metrics (FastAPI + uvicorn)",
        description="Serve the jobs API (POST /auth/login, POST /jobs, GET /jobs/{id}, "
        "GET /jobs/{id}/result, GET /history, GET /incidents, GET /healthz, GET /metrics) "
        "over the catalog of $EDVMP_HOME and the uploads bucket $EDVMP_BUCKET on "
        "$EDVMP_S3_ENDPOINT_URL. Needs EDVMP_API_SECRET and EDVMP_API_USERS, or --dev. "
        "Exit status: 2 bad configuration or port in use.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument(
        "--dev",
        action="store_true",
        help="local development: generate the signing secret (and a 'dev' user when "
        "EDVMP_API_USERS is unset) and print them on stderr",
    )
    p.set_defaults(func=run)


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port (1..65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{host}:{port} is already in use (choose --port)") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def build_config(*, dev: bool) -> tuple[object, list[str]]:
    """The app's configuration from the environment, and what --dev made up (to print)."""
    from edvmp_pipeline import settings
    from edvmp_pipeline.adapters.object_store import object_store_from_env
    from edvmp_pipeline.api.app import ApiConfig
    from edvmp_pipeline.api.auth import Authenticator, User, hash_password, load_users
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.domain.video_filter import parse_extensions
    from edvmp_pipeline.services.api_jobs import UploadSettings

    notes: list[str] = []
    secret = settings.api_secret()
    if secret is None:
        if not dev:
            raise ConfigError(
                "EDVMP_API_SECRET is not set: give it at least 32 random bytes "
                "(`openssl rand -hex 32`), or run `edvmp serve --dev` locally"
            )
        secret = secrets.token_hex(32)
        notes.append("--dev: generated a token signing secret for this process only")
    users_file = settings.api_users_file()
    if users_file is not None:
        users = load_users(users_file)
    elif dev:
        password = secrets.token_urlsafe(12)
        users = {"dev": User("dev", hash_password(password), role="admin")}
        notes.append(f"--dev: log in as user 'dev' with password {password!r}")
    else:
        raise ConfigError(
            "EDVMP_API_USERS is not set: name a YAML file of users and argon2 password hashes "
            "(edvmp hash-password makes one), or run `edvmp serve --dev` locally"
        )
    store = object_store_from_env()
    config = ApiConfig(
        catalog=Catalog(settings.catalog_location()).ensure(),
        authenticator=Authenticator(users, secret, settings.api_token_ttl_s()),
        uploads=UploadSettings(
            bucket=settings.uploads_bucket(),
            prefix=settings.uploads_prefix(),
            extensions=parse_extensions(settings.video_extensions_text()),
            url_expiry_s=settings.api_upload_expiry_s(),
            max_upload_bytes=settings.api_max_upload_bytes(),
        ),
        s3_client=store.s3_client,
    )
    return config, notes


def run(args: argparse.Namespace) -> int:
    """Start uvicorn; returns when the server stops (SIGINT/SIGTERM)."""
    import uvicorn

    from edvmp_pipeline.api.app import create_app

    _check_port(args.host, args.port)
    config, notes = build_config(dev=args.dev)
    for note in notes:
        print(f"edvmp serve: {note}", file=sys.stderr)
    app = create_app(config)  # type: ignore[arg-type]
    print(f"edvmp serve: listening on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
    return 0
