"""edvmp: event-driven video metadata platform on Dagster."""
