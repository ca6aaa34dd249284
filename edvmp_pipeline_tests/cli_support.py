"""Helpers for tests that go through the installed console script and the catalog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edvmp_pipeline.catalog.store import Catalog


def run_edvmp(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the ``edvmp`` console script of this virtualenv."""
    exe = Path(sys.executable).with_name("edvmp")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def catalog_at(home: Path) -> Catalog:
    """The catalog of an ``EDVMP_HOME``."""
    return Catalog(home / "catalog")
