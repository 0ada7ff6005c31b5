"""Domain steps behind the assets: plain functions, testable without Dagster."""
