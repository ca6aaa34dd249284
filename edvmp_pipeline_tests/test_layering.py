"""The package's import arrows point one way (README, Layout): a module never imports one of
a package listed below its own, and the pure layer imports no I/O library. Read from the
source with ``ast``, imports inside functions included, so a lazy import cannot hide."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edvmp_pipeline"
ORDER = ["domain", "settings", "catalog", "adapters", "services", "api", "defs", "cli"]
# The pure layer: no I/O clients, no orchestration framework.
DOMAIN_FORBIDDEN = ("dagster", "boto3", "botocore", "duckdb", "pyarrow", "sqlite3", "subprocess")


def imports_of(path: Path) -> list[str]:
    """Every module name ``path`` imports, at any depth of the file."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layer_of(path: Path) -> str | None:
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    return part if part in ORDER else None


def imported_layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "edvmp_pipeline" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ORDER else None


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_imports_point_up_the_layer_list(path: Path) -> None:
    own = layer_of(path)
    if own is None:
        return
    for name in imports_of(path):
        target = imported_layer(name)
        if target is not None:
            assert ORDER.index(target) <= ORDER.index(own), f"{own} imports {name}"
        if own == "domain":
            assert name.split(".")[0] not in DOMAIN_FORBIDDEN, f"domain imports {name}"


def test_no_private_dagster_modules_in_the_package() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for name in imports_of(path)
        if name.startswith("dagster._") or name.startswith("dagster_aws._")
    ]
    assert offenders == []
