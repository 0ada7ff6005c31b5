"""Spool mode: result writes as Parquet *units*, applied to DuckDB by one merger.

Why: DuckDB allows one writing process per file and relies on the file lock to
enforce it. Workers on several hosts (a SLURM allocation over Lustre, Kubernetes
pods on a ReadWriteMany volume, a bucket mounted with FUSE) cannot share that
lock reliably, so they must not write the DuckDB file at all. With a spool
directory configured (``MPQ_SPOOL_DIR`` or ``ResultsStore(spool_dir=...)``):

- ``ResultsStore.replace_partitions(writes)`` writes ONE file per call, a *unit*:
  ``<spool>/<time_ns>-<uuid>-<table~keys>.parquet``. Each row of the unit is one
  write of the call (table, partition keys as JSON, row count, SHA-256 and the
  rows themselves as embedded Parquet bytes, so every table keeps its own
  column types). The file is written under a hidden temporary name, fsynced and
  published with one atomic ``os.replace``: a reader sees a whole unit or none.
- ``merge_spool(store)`` (``mpq merge``, or the ``mpq_spool_merge`` sensor) is
  the single writer: it applies pending units in name order (time, then uuid),
  each in ONE DuckDB transaction with the same delete-then-insert semantics as
  direct writes, and records the unit in the ``spool_merged`` ledger in that
  same transaction. After the batch it checkpoints and publishes a read
  snapshot (``<spool>/snapshot/mpq.duckdb``, copied under a temp name and
  renamed), and only then moves the units to ``<spool>/merged/``. A crash
  between COMMIT and the move leaves units that the ledger marks as applied:
  the next merge moves them without applying them again (applying one again
  would give the same rows anyway: replace semantics).
- A unit that cannot be read or does not fit the schema is moved to
  ``<spool>/failed/`` with ``<name>.error.txt`` and reported by name; the other
  units merge.
- Reads see their own writes: in spool mode ``ResultsStore.reader()`` /
  ``query()`` open an in-memory DuckDB that attaches the snapshot (or, before
  the first merge, the results file if this host sees it) read-only and lays
  the pending units over it (a pending unit replaces the partitions it names),
  so ``quality`` finds the ``compressed`` rows its own run just spooled. Units
  in the attached file's ledger are not laid over twice. Workers never read
  the live file while the merger writes it: the snapshot is immutable once
  published, so the DuckDB file itself can live on the merger's local disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mpq_assets.store.schema import PARTITION_KEYS, StoreError, apply_migrations, process_lock, schema_columns, sql_text

if TYPE_CHECKING:
    from mpq_assets.store.results_store import ResultsStore

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
UNIT_SUFFIX = ".parquet"
MERGED_DIR = "merged"
FAILED_DIR = "failed"
LEDGER_TABLE = "spool_merged"
SNAPSHOT = ("snapshot", "mpq.duckdb")  # below the spool directory
_META_PREFIX = b"mpq.spool."
_UNIT_NAME = re.compile(r"^(?P<ns>\d{20})-(?P<uid>[0-9a-f]{12})-[A-Za-z0-9._=~+-]*\.parquet$")
_UNIT_SCHEMA = pa.schema([
    ("write", pa.int32()),
    ("table", pa.string()),
    ("keys", pa.string()),  # JSON object: the partition's key columns
    ("n_rows", pa.int64()),
    ("sha256", pa.string()),  # of ``rows``
    ("rows", pa.binary()),  # the rows of this write as a Parquet file
])
# DuckDB failures that say nothing about the unit: stop merging, keep the unit pending
_ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(duckdb, name) for name in ("IOException", "OutOfMemoryException", "InterruptException",
                                       "FatalException", "InternalException") if hasattr(duckdb, name))


class SpoolUnitError(ValueError):
    """A unit that cannot be read or applied (truncated, corrupt, foreign schema)."""


@dataclass(frozen=True)
class Write:
    table: str
    keys: dict[str, Any]
    rows: pd.DataFrame


@dataclass(frozen=True)
class Unit:
    name: str
    writes: tuple[Write, ...]
    meta: dict[str, str]

    @property
    def rows(self) -> int:
        return sum(len(w.rows) for w in self.writes)


@dataclass
class MergeSummary:
    """What one ``merge_spool`` call did; ``failed`` holds (unit name, reason)."""

    merged: list[str] = field(default_factory=list)
    rows: int = 0
    already_applied: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred: int = 0  # pending units left for the next call (max_units / max_seconds)
    seconds: float = 0.0

    def describe(self) -> str:
        parts = [f"merged {len(self.merged)} unit(s), {self.rows} row(s)"]
        if self.already_applied:
            parts.append(f"{len(self.already_applied)} already applied (moved)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed: {', '.join(n for n, _ in self.failed)}")
        if self.deferred:
            parts.append(f"{self.deferred} left for the next merge")
        return "; ".join(parts) + f" ({self.seconds:.1f}s)"


# -- writing units --------------------------------------------------------------------
_SEQ_LOCK = threading.Lock()
_LAST_NS = 0


def _next_ns() -> int:
    """Wall-clock nanoseconds, strictly increasing within the process (units sort by it)."""
    global _LAST_NS
    with _SEQ_LOCK:
        _LAST_NS = max(time.time_ns(), _LAST_NS + 1)
        return _LAST_NS


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def unit_name(writes: Sequence[tuple[str, Mapping[str, Any], Any]], ns: int | None = None) -> str:
    """``<20-digit time_ns>-<12 hex uuid>-<table~key~key>[+N].parquet``: sortable, unique, readable."""
    ns = _next_ns() if ns is None else ns
    label = ""
    if writes:
        table, keys, _ = writes[0]
        label = "~".join(_slug(str(v)) for v in (table, *keys.values()))[:120]
        if len(writes) > 1:
            label += f"+{len(writes) - 1}"
    return f"{ns:020d}-{uuid.uuid4().hex[:12]}-{label}{UNIT_SUFFIX}"


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def _fsync_dir(path: Path) -> None:
    with suppress(OSError):  # not every filesystem lets a directory be opened/fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_unit(spool_dir: str | Path, writes: Sequence[tuple[str, Mapping[str, Any], pd.DataFrame]]) -> Path:
    """Publish ``writes`` (already validated) as one unit; returns its path. Temp name + fsync + rename."""
    spool = Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True)
    name = unit_name(writes)
    stamp = pd.Timestamp.now()  # what DuckDB's created_at default would say, at write time rather than merge
    records = {col: [] for col in _UNIT_SCHEMA.names}
    for i, (table, keys, frame) in enumerate(writes):
        if "created_at" in dict(schema_columns().get(table, ())) and "created_at" not in frame.columns:
            frame = frame.assign(created_at=stamp)
        blob = _frame_bytes(frame)
        for col, value in zip(_UNIT_SCHEMA.names, (i, table, json.dumps(dict(keys), sort_keys=True), len(frame),
                                                   hashlib.sha256(blob).hexdigest(), blob), strict=True):
            records[col].append(value)
    meta = {b"format": FORMAT_VERSION, b"unit": name, b"created_ns": name[:20], b"host": socket.gethostname(),
            b"pid": str(os.getpid())}
    table = pa.table(records, schema=_UNIT_SCHEMA.with_metadata({_META_PREFIX + k: v for k, v in meta.items()}))
    tmp = spool / f".{name}.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, spool / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(spool)
    return spool / name


# -- reading units --------------------------------------------------------------------
def pending_units(spool_dir: str | Path) -> list[Path]:
    """Published units waiting for the merge, oldest first (hidden temp files are not units)."""
    spool = Path(spool_dir)
    if not spool.is_dir():
        return []
    return sorted(p for p in spool.iterdir()
                  if p.name.endswith(UNIT_SUFFIX) and not p.name.startswith(".") and p.is_file())


def _unit_meta(path: Path, table: pa.Table) -> dict[str, str]:
    """A unit's own metadata, after checking its format version, the name it was published under and its columns."""
    raw_meta = table.schema.metadata or {}
    meta = {k[len(_META_PREFIX):].decode(): v.decode() for k, v in raw_meta.items() if k.startswith(_META_PREFIX)}
    if meta.get("format") != FORMAT_VERSION:
        raise SpoolUnitError(f"spool format {meta.get('format')!r}, this code reads {FORMAT_VERSION!r}")
    if meta.get("unit") != path.name:
        raise SpoolUnitError(f"unit was published as {meta.get('unit')!r}")
    if set(table.schema.names) != set(_UNIT_SCHEMA.names):
        raise SpoolUnitError(f"columns {table.schema.names}, expected {_UNIT_SCHEMA.names}")
    return meta


def _parse_write(i: int, rec: dict[str, Any]) -> Write:
    """Record ``i`` of a unit as a :class:`Write`, checked against its number, checksum, row count and the schema."""
    if rec["write"] != i:
        raise SpoolUnitError(f"write {i} is numbered {rec['write']}")
    blob = rec["rows"] or b""
    if hashlib.sha256(blob).hexdigest() != rec["sha256"]:
        raise SpoolUnitError(f"write {i} ({rec['table']}): checksum mismatch")
    frame = pq.read_table(io.BytesIO(blob)).to_pandas()
    if len(frame) != rec["n_rows"]:
        raise SpoolUnitError(f"write {i} ({rec['table']}): {len(frame)} rows, header says {rec['n_rows']}")
    keys = json.loads(rec["keys"])
    if rec["table"] not in PARTITION_KEYS or set(keys) != set(PARTITION_KEYS[rec["table"]]):
        raise SpoolUnitError(f"write {i}: table {rec['table']!r} with keys {sorted(keys)} is not in the schema")
    return Write(rec["table"], keys, frame)


def read_unit(path: str | Path) -> Unit:
    """Parse and verify a unit; anything wrong raises :class:`SpoolUnitError` naming the unit."""
    path = Path(path)
    try:
        if not _UNIT_NAME.match(path.name):
            raise SpoolUnitError("not a unit name (<time_ns>-<uuid>-<label>.parquet)")
        table = pq.read_table(path)
        meta = _unit_meta(path, table)
        writes = [_parse_write(i, rec) for i, rec in enumerate(table.to_pylist())]
        return Unit(path.name, tuple(writes), meta)
    except SpoolUnitError as exc:
        raise SpoolUnitError(f"{path.name}: {exc}") from None
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated footer, bad Parquet, bad JSON, ...
        raise SpoolUnitError(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from exc


_CACHE: OrderedDict[tuple[str, int, int], Unit] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 512


def _read_cached(path: Path) -> Unit:
    """Units never change once published: cache them by (path, size, mtime) for the read overlay."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    unit = read_unit(path)
    with _CACHE_LOCK:
        _CACHE[key] = unit
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return unit


# -- merging ----------------------------------------------------------------------------
def _ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (unit VARCHAR PRIMARY KEY, writes INTEGER, "
                "rows BIGINT, host VARCHAR, merged_at TIMESTAMP DEFAULT current_timestamp)")


def _in_ledger(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute(f"SELECT count(*) FROM {LEDGER_TABLE} WHERE unit = ?", [name]).fetchone()[0] > 0


def _move(path: Path, folder: str) -> Path:
    dest_dir = path.parent / folder
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / path.name
    os.replace(path, dest)
    return dest


def _finish(path: Path, keep_merged: bool) -> None:
    """After COMMIT: the unit leaves the pending set (kept under merged/ as an audit trail by default)."""
    if keep_merged:
        _move(path, MERGED_DIR)
    else:
        path.unlink(missing_ok=True)


def _quarantine(path: Path, reason: str) -> None:
    with suppress(FileNotFoundError):
        dest = _move(path, FAILED_DIR)
        dest.with_name(dest.name + ".error.txt").write_text(reason + "\n", encoding="utf-8")


def snapshot_path(spool_dir: str | Path) -> Path:
    return Path(spool_dir).joinpath(*SNAPSHOT)


def _publish_snapshot(db: Path, spool: Path) -> None:
    """Copy the (checkpointed) results file next to the units: temp name, fsync, atomic rename."""
    dest = snapshot_path(spool)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with db.open("rb") as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def _over_budget(n: int, start: float, max_units: int | None, max_seconds: float | None) -> bool:
    """Whether this merge call has used up its ``max_units`` / ``max_seconds`` before unit ``n``."""
    return (max_units is not None and n >= max_units) or (
        max_seconds is not None and time.monotonic() - start > max_seconds)


def _read_for_merge(path: Path, summary: MergeSummary) -> Unit | None:
    """The unit at ``path``, or None: gone (another merger took it), or unreadable (quarantined and reported)."""
    try:
        return read_unit(path)
    except FileNotFoundError:  # another merger took it: not ours to report
        return None
    except SpoolUnitError as exc:
        log.error("spool unit skipped: %s", exc)
        _quarantine(path, str(exc))
        summary.failed.append((path.name, str(exc)))
        return None


def _apply_unit(writer: ResultsStore, con: duckdb.DuckDBPyConnection, unit: Unit) -> int:
    """Apply one unit and record it in the ledger in ONE transaction (rolled back on any error); rows inserted."""
    prepared = [(w.table, w.keys, writer.prepare(w.table, w.keys, w.rows)) for w in unit.writes]
    con.execute("BEGIN TRANSACTION")
    try:
        inserted = writer.apply(con, prepared)
        con.execute(f"INSERT INTO {LEDGER_TABLE} (unit, writes, rows, host) VALUES (?, ?, ?, ?)",
                    [unit.name, len(unit.writes), inserted, unit.meta.get("host")])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return inserted


def _merge_unit(writer: ResultsStore, con: duckdb.DuckDBPyConnection, path: Path, summary: MergeSummary) -> bool:
    """Read and apply one pending unit, recording the outcome in ``summary``; whether it is committed (now or
    before), i.e. may leave the pending set."""
    unit = _read_for_merge(path, summary)
    if unit is None:
        return False
    if _in_ledger(con, unit.name):  # committed before, the move did not happen (crash): just move
        summary.already_applied.append(unit.name)
        return True
    try:
        inserted = _apply_unit(writer, con, unit)
    except _ENVIRONMENT_ERRORS:
        raise
    except (StoreError, duckdb.Error) as exc:  # the unit does not fit the table: report, go on
        reason = f"{unit.name}: does not apply ({type(exc).__name__}: {exc})"
        log.error("spool unit skipped: %s", reason)
        _quarantine(path, reason)
        summary.failed.append((unit.name, reason))
        return False
    summary.merged.append(unit.name)
    summary.rows += inserted
    return True


def merge_spool(store: ResultsStore, spool_dir: str | Path | None = None, *, max_units: int | None = None,
                max_seconds: float | None = None, keep_merged: bool = True, snapshot: bool = True) -> MergeSummary:
    """Apply pending units to ``store``'s DuckDB file, oldest first, one transaction per unit.

    Run it from ONE process at a time (the ``mpq_spool_merge`` sensor, ``mpq merge``, a cron job): it is
    the only DuckDB writer in spool mode. ``max_units``/``max_seconds`` bound one call; the rest waits.
    Units leave the pending set only after their COMMIT and after the read snapshot that holds them is
    published (``snapshot=False``: no snapshot, for setups whose workers do not read results).
    """
    start = time.monotonic()
    spool = Path(spool_dir) if spool_dir is not None else store.spool_dir
    if spool is None:
        raise ValueError("no spool directory: set MPQ_SPOOL_DIR or pass spool_dir")
    summary = MergeSummary()
    paths = pending_units(spool)
    if not paths:
        return summary
    writer = store.direct()
    done: list[Path] = []  # committed (now or by an earlier merge that stopped before moving them)
    with writer.write_connection() as con:
        _ensure_ledger(con)
        for n, path in enumerate(paths):
            if _over_budget(n, start, max_units, max_seconds):
                summary.deferred = len(paths) - n
                break
            if _merge_unit(writer, con, path, summary):
                done.append(path)
        if done and snapshot:
            con.execute("CHECKPOINT")  # the file alone now holds every commit; we keep the write lock while copying
            _publish_snapshot(writer.path, spool)
    for path in done:
        _finish(path, keep_merged)
    summary.seconds = time.monotonic() - start
    return summary


# -- reading through the spool ------------------------------------------------------------
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _attach_read_only(store: ResultsStore, con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> None:
    quoted = str(path).replace("'", "''")
    store.retry_on_lock(lambda: con.execute(f"ATTACH '{quoted}' AS {alias} (READ_ONLY)"))


def _read_source(store: ResultsStore) -> Path | None:
    """What the overlay reads under the pending units: the merger's snapshot, else the file, else nothing."""
    snap = snapshot_path(store.spool_dir)
    if snap.exists():
        return snap
    return store.path if store.path.exists() else None


def _read_pending(spool_dir: Path) -> list[Unit]:
    """The readable pending units, oldest first; gone or unreadable ones are left out of the read."""
    units = []
    for path in pending_units(spool_dir):
        try:
            units.append(_read_cached(path))
        except FileNotFoundError:  # merged meanwhile: the file attached below already holds it
            continue
        except SpoolUnitError as exc:  # the merge will quarantine and report it
            log.warning("spool unit not readable, left out of the read: %s", exc)
    return units


def _attach_source(store: ResultsStore, con: duckdb.DuckDBPyConnection, source: Path
                   ) -> tuple[dict[str, set[str]], set[str]]:
    """Attach ``source`` read-only as ``mpq_db``: its tables' columns, and the units its ledger holds."""
    _attach_read_only(store, con, source, "mpq_db")
    base_cols: dict[str, set[str]] = {}
    for table, column in con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                     "WHERE database_name = 'mpq_db' AND schema_name = 'main'").fetchall():
        base_cols.setdefault(table, set()).add(column)
    merged: set[str] = set()
    if LEDGER_TABLE in base_cols:
        merged = {r[0] for r in con.execute(f"SELECT unit FROM mpq_db.main.{LEDGER_TABLE}").fetchall()}
    return base_cols, merged


def _replay_units(store: ResultsStore, con: duckdb.DuckDBPyConnection, units: Sequence[Unit], merged: set[str]
                  ) -> dict[str, set[tuple]]:
    """Apply the units not in ``merged`` to the current database; table -> partition keys they touched."""
    touched: dict[str, set[tuple]] = {}
    for unit in units:
        if unit.name in merged:
            continue
        prepared = [(w.table, w.keys, store.prepare(w.table, w.keys, w.rows)) for w in unit.writes]
        store.apply(con, prepared)
        for w in unit.writes:
            touched.setdefault(w.table, set()).add(tuple(w.keys[c] for c in PARTITION_KEYS[w.table]))
    return touched


def _untouched_filter(con: duckdb.DuckDBPyConnection, table: str, touched: set[tuple]) -> str:
    """A WHERE clause keeping the base rows (alias ``b``) of the partitions no pending unit replaced."""
    keys = PARTITION_KEYS[table]
    con.execute(f"CREATE TABLE mpq_spool.main._touched_{table} AS SELECT "
                f"{', '.join(_q(k) for k in keys)} FROM mpq_spool.main.{_q(table)} LIMIT 0")
    con.executemany(f"INSERT INTO mpq_spool.main._touched_{table} VALUES "
                    f"({', '.join('?' for _ in keys)})", [list(k) for k in touched])
    match = " AND ".join(f"k.{_q(k)} = b.{_q(k)}" for k in keys)
    return f" WHERE NOT EXISTS (SELECT 1 FROM mpq_spool.main._touched_{table} k WHERE {match})"


def _overlay_view(con: duckdb.DuckDBPyConnection, table: str, cols: tuple[tuple[str, str], ...],
                  base_cols: dict[str, set[str]], touched: dict[str, set[tuple]]) -> None:
    """The view ``table``: the replayed rows, plus the base file's rows of the partitions they do not replace
    (columns the base file lacks read as NULL)."""
    select = ", ".join(_q(c) for c, _ in cols)
    parts = [f"SELECT {select} FROM mpq_spool.main.{_q(table)}"]
    if table in base_cols:
        have = base_cols[table]
        base = ", ".join(f"b.{_q(c)}" if c in have else f"CAST(NULL AS {t}) AS {_q(c)}" for c, t in cols)
        where = _untouched_filter(con, table, touched[table]) if touched.get(table) else ""
        parts.insert(0, f"SELECT {base} FROM mpq_db.main.{_q(table)} b{where}")
    con.execute(f"CREATE VIEW {_q(table)} AS {' UNION ALL '.join(parts)}")


def _create_views(con: duckdb.DuckDBPyConnection, columns: dict[str, tuple[tuple[str, str], ...]],
                  base_cols: dict[str, set[str]], touched: dict[str, set[tuple]]) -> None:
    """Every table of the schema as an overlay view, the base file's other tables as plain views, then the
    documented views on top."""
    for table, cols in columns.items():
        _overlay_view(con, table, cols, base_cols, touched)
    for table in sorted(set(base_cols) - set(columns)):  # schema_migrations, the ledger, ...
        con.execute(f"CREATE VIEW {_q(table)} AS SELECT * FROM mpq_db.main.{_q(table)}")
    if "schema_migrations" not in base_cols:
        con.execute("CREATE VIEW schema_migrations AS SELECT * FROM (VALUES (0, 'none', NULL::TIMESTAMP)) "
                    "t(version, name, applied_at) WHERE false")
    con.execute(sql_text("views.sql"))


@contextmanager
def overlay_connection(store: ResultsStore) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose tables are the snapshot (else the results file; read-only) with the pending units
    laid over it.

    The pending units (minus those in the attached file's ledger) are replayed, in order and with the
    store's own delete+insert code, into an in-memory copy of the schema; each table is then a view: the
    file's rows of the partitions no pending unit touched, plus the replayed rows. The documented views are
    created on top, so any query that runs against the results file runs here. Nothing is written anywhere.
    Units are read before the file is attached: a unit merged in between is in the file by then.
    """
    assert store.spool_dir is not None
    units = _read_pending(store.spool_dir)
    columns = schema_columns()
    source = _read_source(store)
    with process_lock(store.path):
        con = duckdb.connect(":memory:")
        try:
            con.execute("ATTACH ':memory:' AS mpq_spool")
            con.execute("USE mpq_spool")
            apply_migrations(con)
            con.execute("USE memory")
            base_cols: dict[str, set[str]] = {}
            merged: set[str] = set()
            if source is not None:
                base_cols, merged = _attach_source(store, con, source)
            con.execute("USE mpq_spool")
            touched = _replay_units(store, con, units, merged)
            con.execute("USE memory")
            _create_views(con, columns, base_cols, touched)
            yield con
        finally:
            con.close()
