"""The catalog: Parquet files as the source of truth, DuckDB views as the query layer."""
