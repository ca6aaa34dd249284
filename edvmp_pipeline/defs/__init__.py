"""All Dagster wiring: resources, tags, partitions, assets and checks, jobs, sensors, and the
in-process batch runs. Nothing below this package imports it."""
