"""Datasets: item sources with stable ids, and their registry."""

from mpq_assets.datasets.base import Dataset, ItemSource, check_item_id
from mpq_assets.datasets.registry import DATASETS, make_dataset

__all__ = ["DATASETS", "Dataset", "ItemSource", "check_item_id", "make_dataset"]
