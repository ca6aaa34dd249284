"""The catalog as a Dagster resource."""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.catalog.store import Catalog


class CatalogResource(dg.ConfigurableResource):
    """Where the Parquet tables and the DuckDB file live (``EDVMP_CATALOG``)."""

    root: str

    def catalog(self) -> Catalog:
        """The catalog, with its table folders created."""
        return Catalog(self.root).ensure()
