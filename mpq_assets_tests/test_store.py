"""The ResultsStore contract: schema, idempotent partition replacement, real-process concurrency,
read-only readers and a lock error that names its holder."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mpq_assets.store import ResultsStore, StoreError, StoreLockedError, lock_holder

pytestmark = pytest.mark.fast  # the `make check` tier


def _compressed_rows(n: int, codec: str, bitrate: str, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": [f"item{i:03d}" for i in range(offset, offset + n)],
        "target_ratio": 100.0, "budget_bytes": 1000, "bytes": [900 + i for i in range(n)], "bpp": 0.1,
        "kbps": None, "achieved_ratio": 110.0, "setting": "q=5", "rate_met": True, "trials": 7,
        "encode_s": 0.01, "decode_s": 0.001, "path": "/x", "codec": codec, "bitrate": bitrate,
    })


def test_schema_created_with_tables_views_and_version(store: ResultsStore) -> None:
    store.initialise()
    with store.reader() as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"items", "compressed", "errors", "quality", "predictions", "task_scores", "correlations",
            "rate_summary", "codec_summary", "failures"} <= tables
    from mpq_assets.store.schema import migrations

    assert store.schema_version() == len(migrations()) >= 2
    store.initialise()  # re-open: no migration applied twice
    assert store.query("SELECT count(*) AS n FROM schema_migrations")["n"][0] == len(migrations())
    cols = store.query("SELECT column_name FROM information_schema.columns WHERE table_name='compressed'")
    assert "decoded_path" in cols["column_name"].tolist()


def test_replace_partition_is_idempotent_and_isolated(store: ResultsStore) -> None:
    keys = {"experiment": "e", "codec": "jpeg", "bitrate": "20x"}
    other = {"experiment": "e", "codec": "webp", "bitrate": "20x"}
    assert store.replace_partition("compressed", keys, _compressed_rows(5, "jpeg", "20x")) == 5
    store.replace_partition("compressed", other, _compressed_rows(3, "webp", "20x"))
    store.replace_partition("compressed", keys, _compressed_rows(5, "jpeg", "20x"))
    counts = store.query("SELECT codec, count(*) AS n FROM compressed GROUP BY codec ORDER BY codec")
    assert counts.to_dict("list") == {"codec": ["jpeg", "webp"], "n": [5, 3]}
    # replacing with fewer rows removes the old ones; an empty frame clears the partition
    store.replace_partition("compressed", keys, _compressed_rows(2, "jpeg", "20x"))
    store.replace_partition("compressed", other, _compressed_rows(0, "webp", "20x"))
    assert store.query("SELECT count(*) AS n FROM compressed")["n"][0] == 2
    summary = store.query("SELECT * FROM rate_summary")
    assert summary["items"].tolist() == [2]


def test_failed_write_keeps_previous_rows(store: ResultsStore) -> None:
    keys = {"experiment": "e", "codec": "jpeg", "bitrate": "20x"}
    store.replace_partition("compressed", keys, _compressed_rows(4, "jpeg", "20x"))
    bad = _compressed_rows(4, "jpeg", "20x")
    bad["bytes"] = None  # violates NOT NULL inside the transaction, after the DELETE
    with pytest.raises(duckdb.Error):
        store.replace_partition("compressed", keys, bad)
    assert store.query("SELECT count(*) AS n FROM compressed")["n"][0] == 4


def test_rejects_wrong_partition_and_unknown_columns(store: ResultsStore) -> None:
    keys = {"experiment": "e", "codec": "jpeg", "bitrate": "20x"}
    with pytest.raises(StoreError, match="other than the partition"):
        store.replace_partition("compressed", keys, _compressed_rows(2, "webp", "20x"))
    with pytest.raises(StoreError, match="identified by"):
        store.replace_partition("compressed", {"experiment": "e"}, _compressed_rows(1, "jpeg", "20x"))
    rows = _compressed_rows(1, "jpeg", "20x").assign(nonsense=1)
    with pytest.raises(StoreError, match="unknown columns"):
        store.replace_partition("compressed", keys, rows)
    with pytest.raises(StoreError, match="unknown table"):
        store.replace_partition("nope; DROP TABLE items", keys, rows)


def test_readers_are_read_only(store: ResultsStore) -> None:
    store.initialise()
    with store.reader() as con, pytest.raises(duckdb.Error, match="read-only"):
        con.execute("CREATE TABLE hack (a INT)")


def _writer(path: str, codec: str, n_parts: int, rows: int) -> None:
    s = ResultsStore(path, lock_timeout_s=120, max_backoff_s=0.2)
    for b in range(n_parts):
        bitrate = f"{20 * (b + 1)}x"
        s.replace_partition("compressed", {"experiment": "conc", "codec": codec, "bitrate": bitrate},
                            _compressed_rows(rows, codec, bitrate))
        # and a second time: re-materialisation must not duplicate
        s.replace_partition("compressed", {"experiment": "conc", "codec": codec, "bitrate": bitrate},
                            _compressed_rows(rows, codec, bitrate))


def test_eight_processes_write_concurrently_without_loss_or_duplicates(store: ResultsStore) -> None:
    store.initialise()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(store.path), f"codec{i}", 3, 50)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 8
    got = store.query("SELECT codec, bitrate, count(*) AS n, count(DISTINCT item_id) AS d FROM compressed "
                      "GROUP BY codec, bitrate")
    assert len(got) == 8 * 3
    assert (got["n"] == 50).all() and (got["d"] == 50).all()


def test_lock_timeout_names_the_holder(store: ResultsStore, tmp_path: Path) -> None:
    store.initialise()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(store.path)!r})
        print("locked", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        impatient = ResultsStore(store.path, lock_timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(StoreLockedError) as err:
            impatient.replace_partition("items", {"experiment": "e"}, pd.DataFrame())
        assert time.monotonic() - start >= 1.0
        assert f"PID {holder.pid}" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_lock_holder_parsing() -> None:
    msg = ('IO Error: Could not set lock on file "/d/mpq.duckdb": Conflicting lock is held in '
           "/usr/bin/python3.11 (PID 4242). See also https://duckdb.org/docs/connect/concurrency")
    assert lock_holder(msg) == "python3.11 (PID 4242)"
    assert lock_holder("something else") == "another process"


def test_threads_in_one_process_take_turns(store: ResultsStore) -> None:
    import threading

    store.initialise()
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            keys = {"experiment": "threads", "codec": f"c{i}", "bitrate": "20x"}
            store.replace_partition("compressed", keys, _compressed_rows(10, f"c{i}", "20x"))
            store.query("SELECT count(*) FROM compressed")  # a reader while other threads write
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert store.query("SELECT count(*) AS n FROM compressed WHERE experiment='threads'")["n"][0] == 60
