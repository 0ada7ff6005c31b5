"""SQL from users (``mpq query``): the results file read-only, and nothing else on the machine.

The connection opens the file ``read_only`` with DuckDB's external access off
(no COPY TO, no ``read_csv``/``read_parquet``/``glob`` of other files, no
ATTACH, no INSTALL), extension auto-loading and installing off, and the
configuration locked so a statement cannot switch any of that back on. Exports
are the CLI's own ``--output``, written by pandas from the result, never by SQL.
Errors come back as :class:`QueryError`, one line: what DuckDB refused and why.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from mpq_assets.store.results_store import ResultsStore
from mpq_assets.store.schema import process_lock

SANDBOX: dict[str, bool | str] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


class QueryError(Exception):
    """A user query DuckDB refused or could not run; the message is one line."""


def one_line(exc: BaseException) -> str:
    """DuckDB's message without its multi-line hints (``LINE 1: ...`` and the caret)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first


def run_user_query(db: Path, sql: str, lock_timeout_s: float = 30.0) -> pd.DataFrame:
    """``sql`` on the results file ``db``, sandboxed (see the module docstring)."""
    if not db.is_file():
        raise QueryError(f"no results database at {db}; run `make demo` first")
    store = ResultsStore(db, lock_timeout_s=lock_timeout_s)
    with process_lock(db):
        try:
            con = store.retry_on_lock(lambda: duckdb.connect(str(db), read_only=True, config=dict(SANDBOX)))
        except duckdb.Error as exc:
            raise QueryError(f"cannot open {db}: {one_line(exc)}") from exc
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            raise QueryError(one_line(exc)) from exc
        finally:
            con.close()
