"""ResultsStore: the only writer of the DuckDB results file.

Why this shape: DuckDB allows one writing process per file. Dagster runs many
processes (multiprocess executor, backfills, the daemon), so every write opens
the file, replaces one partition's rows in a single short transaction, and
closes it again. While another process holds the lock we retry with jittered
exponential backoff; after ``lock_timeout_s`` the error names the holder
(program and PID) taken from DuckDB's own message. Readers open read-only.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd

from mpq_assets.store.schema import PARTITION_KEYS, StoreError, migrations, process_lock, schema_columns, sql_text
from mpq_assets.store.spool import overlay_connection, write_unit

log = logging.getLogger(__name__)
T = TypeVar("T")
# the results file's storage format: what DuckDB 1.5 (and the duckdb-cli package) reads
STORAGE_COMPATIBILITY = "v1.5.0"
_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")

class StoreLockedError(RuntimeError):
    """Another process kept the DuckDB file locked for longer than the timeout."""


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def lock_holder(message: str) -> str:
    """'python3.11 (PID 1234)' from DuckDB's lock error, or 'another process' when absent."""
    match = _HOLDER.search(message)
    if not match:
        return "another process"
    return f"{Path(match.group('program')).name} (PID {match.group('pid')})"


class ResultsStore:
    """Schema owner and single writer of one DuckDB file.

    With ``spool_dir`` (spool mode, for workers that do not share a disk DuckDB can lock) writes become
    Parquet units in that folder and never open the file; ``merge_spool`` applies them (see ``spool.py``).
    """

    def __init__(self, path: str | Path, *, lock_timeout_s: float = 120.0, max_backoff_s: float = 1.0,
                 spool_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.max_backoff_s = max_backoff_s
        self.spool_dir = Path(spool_dir) if spool_dir else None

    def direct(self) -> ResultsStore:
        """This store writing the DuckDB file itself (the spool merger's view of a spool-mode store)."""
        if self.spool_dir is None:
            return self
        return ResultsStore(self.path, lock_timeout_s=self.lock_timeout_s, max_backoff_s=self.max_backoff_s)

    # -- connections -------------------------------------------------------------
    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        # a new file is written in the storage format current 1.x clients (the duckdb CLI, DBeaver, the R and
        # Julia bindings) read; DuckDB keeps a file's format on later writes
        config = {} if read_only or self.path.exists() else {"storage_compatibility_version": STORAGE_COMPATIBILITY}
        return self.retry_on_lock(lambda: duckdb.connect(str(self.path), read_only=read_only, config=config))

    def retry_on_lock(self, open_: Callable[[], T]) -> T:
        """``open_()`` until DuckDB stops refusing it for the file lock (jittered backoff, then a clear error)."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        attempt = 0
        while True:
            attempt += 1
            try:
                return open_()
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"{self.path} is locked by {lock_holder(str(exc))}; gave up after "
                        f"{self.lock_timeout_s:.0f}s and {attempt} attempts. Stop that process or raise "
                        "MPQ_LOCK_TIMEOUT_S."
                    ) from exc
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())) * random.uniform(0.5, 1.5))
                delay = min(delay * 2, self.max_backoff_s)

    @contextmanager
    def write_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with process_lock(self.path):
            con = self._connect(read_only=False)
            try:
                self._migrate(con)
                yield con
            finally:
                con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (the schema is created first if the file is new).

        In spool mode: the file, read-only, with the pending spool units laid over it (read your writes)."""
        if self.spool_dir is not None:
            with overlay_connection(self) as con:
                yield con
            return
        if not self.path.exists():
            self.initialise()
        with process_lock(self.path):
            con = self._connect(read_only=True)
            try:
                yield con
            finally:
                con.close()

    # -- schema ------------------------------------------------------------------
    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER, name VARCHAR, applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
        pending = [(v, name) for v, name in migrations() if v not in done]
        if pending:
            con.execute("BEGIN TRANSACTION")
            try:
                for version, name in pending:
                    con.execute(sql_text(name))
                    con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
                    log.info("applied migration %s to %s", name, self.path)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        con.execute(sql_text("views.sql"))  # cheap, and keeps views in step with the code

    def initialise(self) -> None:
        """Create or migrate the schema now (writes are also migrated lazily)."""
        with self.write_connection():
            pass

    def schema_version(self) -> int:
        with self.reader() as con:
            return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])

    # -- writes ------------------------------------------------------------------
    def prepare(self, table: str, keys: Mapping[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` as one partition of ``table``: its key columns set, checked against the schema."""
        if table not in PARTITION_KEYS:
            raise StoreError(f"unknown table {table!r}; tables: {', '.join(PARTITION_KEYS)}")
        expected = PARTITION_KEYS[table]
        if set(keys) != set(expected):
            raise StoreError(f"{table}: a partition is identified by {expected}, got {tuple(keys)}")
        frame = rows.copy()
        for col, value in keys.items():
            if col in frame.columns and len(frame) and not (frame[col] == value).all():
                raise StoreError(f"{table}: rows have {col} values other than the partition's {value!r}")
            frame[col] = value
        columns = [c for c, _ in schema_columns()[table]]
        unknown = [c for c in frame.columns if c not in columns]
        if unknown:
            raise StoreError(f"{table}: unknown columns {unknown}; columns are {columns}")
        return frame

    def replace_partitions(self, writes: Sequence[tuple[str, Mapping[str, Any], pd.DataFrame]]) -> int:
        """Replace several partitions (maybe of different tables) in ONE transaction.

        Each write deletes the partition's old rows and inserts the new ones, so a
        re-materialisation gives the same row count and a failure leaves the old
        rows untouched. Returns the number of rows inserted.

        In spool mode the call becomes one Parquet unit in ``spool_dir`` (DuckDB is not opened) and the
        rows reach the file when ``merge_spool`` applies the unit, with these same semantics.
        """
        prepared = [(t, k, self.prepare(t, k, r)) for t, k, r in writes]
        if self.spool_dir is not None:
            write_unit(self.spool_dir, prepared)
            return sum(len(f) for _, _, f in prepared)
        with self.write_connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                inserted = self.apply(con, prepared)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return inserted

    @staticmethod
    def apply(con: duckdb.DuckDBPyConnection, prepared: Sequence[tuple[str, Mapping[str, Any], pd.DataFrame]]
              ) -> int:
        """Delete each partition's rows and insert the new ones, inside the caller's transaction."""
        inserted = 0
        for i, (table, keys, frame) in enumerate(prepared):
            where = " AND ".join(f'"{c}" = ?' for c in keys)
            con.execute(f'DELETE FROM "{table}" WHERE {where}', list(keys.values()))
            if len(frame):
                view = f"_mpq_rows_{i}"
                con.register(view, frame)
                cols = ", ".join(f'"{c}"' for c in frame.columns)
                con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {view}')
                con.unregister(view)
                inserted += len(frame)
        return inserted

    def replace_partition(self, table: str, keys: Mapping[str, Any], rows: pd.DataFrame) -> int:
        """Delete one partition's rows and insert ``rows`` in one transaction (idempotent)."""
        return self.replace_partitions([(table, keys, rows)])

    # -- reads -------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a read-only query and return a DataFrame."""
        with self.reader() as con:
            return con.execute(sql, list(params or [])).df()
