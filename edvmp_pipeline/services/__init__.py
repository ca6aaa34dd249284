"""The use-cases shared by the CLI and the Dagster steps: processing versions, summaries,
compliance, ingest, redrive, incidents, uploads. Plain Python over catalog and adapters."""
