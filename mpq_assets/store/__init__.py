"""Results storage: DuckDB schema, migrations and the single writer."""

from mpq_assets.store.results_store import (
    PARTITION_KEYS,
    ResultsStore,
    StoreError,
    StoreLockedError,
    lock_holder,
)

__all__ = ["PARTITION_KEYS", "ResultsStore", "StoreError", "StoreLockedError", "lock_holder"]
