"""The results schema: which columns identify a partition of each table, the numbered SQL migrations and
views, and the schema as the code defines it (without opening any results file)."""

from __future__ import annotations

import re
import threading
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb

# table -> the columns that identify one partition of it
PARTITION_KEYS: dict[str, tuple[str, ...]] = {
    "items": ("experiment",),
    "compressed": ("experiment", "codec", "bitrate"),
    "errors": ("experiment", "stage", "codec", "bitrate"),
    "quality": ("experiment", "codec", "bitrate"),
    "predictions": ("experiment", "codec", "bitrate", "task"),
    "task_scores": ("experiment", "codec", "bitrate", "task"),
    "correlations": ("experiment",),
    "rate_curves": ("experiment",),
    "bd_rates": ("experiment",),
    "paired_differences": ("experiment",),
    "training_runs": ("experiment",),
    "training_curves": ("experiment",),
    "transfer_scores": ("experiment",),
}
_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def process_lock(path: Path) -> threading.RLock:
    """One lock per database file per process: DuckDB refuses a read-only and a read-write connection
    to the same file from one process, and two writer threads would conflict; threads take turns."""
    key = str(path.resolve())
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.RLock())


class StoreError(ValueError):
    """A write that does not fit the schema or names the wrong partition."""


def sql_text(name: str) -> str:
    return resources.files("mpq_assets.store").joinpath("sql", name).read_text(encoding="utf-8")


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("mpq_assets.store").joinpath("sql")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name))
    return sorted(found)


# -- schema without the results file ------------------------------------------------
def apply_migrations(con: duckdb.DuckDBPyConnection) -> None:
    """The code's schema into the connection's current database (no views, no log lines)."""
    for _, name in migrations():
        con.execute(sql_text(name))


@cache
def schema_columns() -> dict[str, tuple[tuple[str, str], ...]]:
    """table -> ((column, DuckDB type), ...) as the migrations define them (an in-memory database)."""
    con = duckdb.connect(":memory:")
    try:
        apply_migrations(con)
        rows = con.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                           "WHERE database_name = current_database() ORDER BY table_name, column_index").fetchall()
    finally:
        con.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        out.setdefault(table, []).append((column, dtype))
    return {t: tuple(cols) for t, cols in out.items()}
