"""Pure Python domain logic: no Dagster, no I/O beyond what a function names."""
