"""Opening the configured catalog: created by the commands that write it, required by the
commands that only read it (so a read from the wrong folder says so instead of creating an
empty ``./.edvmp`` and answering nothing)."""

from __future__ import annotations

from pathlib import Path

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.state_store import STATE_FILE
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import catalog_location, catalog_root, edvmp_home


def catalog_exists(root: Path) -> bool:
    """A catalog (this release's state store, or a first-release one to migrate) is there.

    With the state in DynamoDB there is no state file: the result tables' folders, which
    every catalog's set-up creates, mark it instead.
    """
    if (root / STATE_FILE).is_file():
        return True
    names = (*schemas.LEGACY_TABLES, *schemas.TABLES)
    return root.is_dir() and any((root / name).is_dir() for name in names)


def _unusable(root: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"catalog {root} is not usable: {exc.strerror or exc} "
        "(set EDVMP_HOME or EDVMP_CATALOG to a writable directory)"
    )


def open_catalog(*, create: bool) -> Catalog:
    """The catalog at ``EDVMP_CATALOG`` / ``$EDVMP_HOME/catalog``, ready to use.

    With ``create`` (ingest, redrive, the sensors' commands) it is made when missing; without
    (query, status, incidents, check) a missing catalog is a :class:`ConfigError` naming
    where it was looked for. Either way a path that cannot hold it (a file in the way, no
    permission, a read-only file system) is a :class:`ConfigError`, not an internal error.
    """
    location = catalog_location()
    if location.startswith("s3://"):
        # The bucket is checked when the catalog is opened (a missing one is a ConfigError).
        return Catalog(location).ensure()
    root = catalog_root()
    if not create and not catalog_exists(root):
        raise ConfigError(
            f"no catalog at {root} (EDVMP_HOME={edvmp_home()}): run `edvmp ingest SOURCE` "
            "first, or set EDVMP_HOME to the home that holds it"
        )
    try:
        return Catalog(root).ensure()
    except OSError as exc:
        raise _unusable(root, exc) from exc
