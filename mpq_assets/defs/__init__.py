"""Dagster wiring only: assets built from experiments, partitions, automation, sensors, the resource, and
the demo runner. The domain code they call lives in ``pipeline`` and below, testable without Dagster."""
