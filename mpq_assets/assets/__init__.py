"""Dagster wiring only: factories that turn an experiment into its assets."""

from mpq_assets.assets.factory import experiment_assets

__all__ = ["experiment_assets"]
