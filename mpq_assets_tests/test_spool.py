"""Spool mode: Parquet units instead of DuckDB writes, one merger, nothing lost, nothing applied twice."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from mpq_assets.cli import main as mpq_main
from mpq_assets.store import ResultsStore, StoreError
from mpq_assets.store import spool as spool_mod
from mpq_assets.store.spool import (
    LEDGER_TABLE,
    merge_spool,
    pending_units,
    read_unit,
    snapshot_path,
    write_unit,
)

pytestmark = pytest.mark.fast  # the `make check` tier

KEYS = {"experiment": "e", "codec": "jpeg", "bitrate": "20x"}


def _compressed(items: list[str], ratio: float = 20.0) -> pd.DataFrame:
    n = len(items)
    return pd.DataFrame({
        "item_id": items, "target_ratio": [ratio] * n, "budget_bytes": [100] * n, "bytes": [90] * n,
        "bpp": [0.5] * n, "kbps": [None] * n, "achieved_ratio": [21.5] * n, "setting": ["q=30"] * n,
        "rate_met": [True] * n, "trials": [4] * n, "encode_s": [0.01] * n, "decode_s": [0.002] * n,
        "path": [f"/a/{i}.jpg" for i in items], "decoded_path": [f"/a/{i}.png" for i in items],
    })


def _items(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": ids, "modality": ["image"] * len(ids), "raw_bytes": [3072] * len(ids),
                         "label": [None] * len(ids), "width": [32] * len(ids)})


def _writes(items: list[str], codec: str = "jpeg") -> list:
    keys = {**KEYS, "codec": codec}
    return [("compressed", keys, _compressed(items)),
            ("errors", {**keys, "stage": "compressed"}, pd.DataFrame(columns=["item_id", "error"]))]


def _table(store: ResultsStore, table: str) -> pd.DataFrame:
    df = store.query(f"SELECT * EXCLUDE (created_at) FROM {table}")
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.fixture()
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "mpq.duckdb", tmp_path / "spool"


def _same_history(store: ResultsStore) -> None:
    """A history of writes (new partitions, a replaced partition, an emptied one, two tables per call)."""
    store.replace_partitions([("items", {"experiment": "e"}, _items(["a", "b", "c"]))])
    store.replace_partitions(_writes(["a", "b", "c"]))
    store.replace_partitions(_writes(["a", "b"], codec="webp"))
    store.replace_partitions(_writes(["a"]))  # re-materialised with one item
    psnr = pd.DataFrame({"item_id": ["a", "b"], "metric": ["psnr"] * 2, "value": [31.5, float("nan")]})
    store.replace_partition("quality", {**KEYS, "codec": "webp"}, psnr)
    store.replace_partition("quality", {**KEYS, "codec": "webp"}, pd.DataFrame(columns=["item_id", "metric", "value"]))


def test_spooled_history_merges_to_the_same_tables_as_direct_writes(tmp_path: Path, paths) -> None:
    direct = ResultsStore(tmp_path / "direct.duckdb")
    _same_history(direct)
    db, spool = paths
    spooled = ResultsStore(db, spool_dir=spool)
    _same_history(spooled)
    assert not db.exists()  # spool mode never opens the results file
    assert len(pending_units(spool)) == 6 and not list(spool.glob(".*"))  # one unit per call, no temp left
    for table in ("items", "compressed", "quality", "errors"):  # read your writes before any merge
        pd.testing.assert_frame_equal(_table(spooled, table), _table(direct, table), check_dtype=False)
    summary = merge_spool(ResultsStore(db), spool)
    assert len(summary.merged) == 6 and not summary.failed and summary.rows == 3 + 3 + 2 + 1 + 2
    assert not pending_units(spool) and len(list((spool / "merged").iterdir())) == 6
    merged = ResultsStore(db)
    for table in ("items", "compressed", "quality", "errors"):
        pd.testing.assert_frame_equal(_table(merged, table), _table(direct, table), check_dtype=False)
    assert merged.query(f"SELECT count(*) AS n FROM {LEDGER_TABLE}")["n"][0] == 6
    # the views answer the same on the merged file, the overlay and the direct file
    assert merged.query("SELECT * FROM rate_summary").equals(direct.query("SELECT * FROM rate_summary"))


def test_unit_is_one_file_named_by_time_uuid_and_keys(paths) -> None:
    _, spool = paths
    first = write_unit(spool, _writes(["a"]))
    second = write_unit(spool, [("items", {"experiment": "e"}, _items(["a"]))])
    assert pending_units(spool) == [first, second]  # names sort by creation time
    assert first.name.endswith("-compressed~e~jpeg~20x+1.parquet") and len(first.name.split("-")[0]) == 20
    unit = read_unit(first)
    assert [w.table for w in unit.writes] == ["compressed", "errors"] and unit.rows == 1
    assert unit.writes[0].keys == KEYS and unit.meta["pid"] == str(os.getpid())
    assert "created_at" in unit.writes[0].rows  # stamped when written, not when merged


def test_spool_mode_validates_writes_like_direct_mode(paths) -> None:
    db, spool = paths
    store = ResultsStore(db, spool_dir=spool)
    with pytest.raises(StoreError, match="unknown columns"):
        store.replace_partition("items", {"experiment": "e"}, _items(["a"]).assign(colour="red"))
    with pytest.raises(StoreError, match="identified by"):
        store.replace_partition("compressed", {"experiment": "e"}, _compressed(["a"]))
    assert not pending_units(spool)


def test_crash_between_commit_and_move_is_not_applied_twice(paths, monkeypatch: pytest.MonkeyPatch) -> None:
    db, spool = paths
    store = ResultsStore(db, spool_dir=spool)
    _same_history(store)
    expected = {t: _table(store, t) for t in ("items", "compressed", "quality", "errors")}

    def crash(path: Path, keep_merged: bool) -> None:
        raise KeyboardInterrupt("merger killed after COMMIT, before the move")

    monkeypatch.setattr(spool_mod, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        merge_spool(ResultsStore(db), spool)
    monkeypatch.undo()
    assert len(pending_units(spool)) == 6  # every unit committed, none moved
    for table, want in expected.items():  # readers see each row once: the ledger hides applied units
        pd.testing.assert_frame_equal(_table(store, table), want, check_dtype=False)
    again = merge_spool(ResultsStore(db), spool)
    assert again.merged == [] and len(again.already_applied) == 6 and not pending_units(spool)
    for table, want in expected.items():
        pd.testing.assert_frame_equal(_table(ResultsStore(db), table), want, check_dtype=False)


def test_reapplying_merged_units_is_idempotent(paths, tmp_path: Path) -> None:
    """Replace semantics: replaying every unit again (a lost ledger, a rebuilt file) gives the same rows."""
    db, spool = paths
    _same_history(ResultsStore(db, spool_dir=spool))
    merge_spool(ResultsStore(db), spool)
    expected = {t: _table(ResultsStore(db), t) for t in ("items", "compressed", "quality", "errors")}
    for path in sorted((spool / "merged").iterdir()):  # put them back as if never merged
        os.replace(path, spool / path.name)
    import duckdb

    con = duckdb.connect(str(db))
    con.execute(f"DELETE FROM {LEDGER_TABLE}")
    con.close()
    assert len(merge_spool(ResultsStore(db), spool).merged) == 6
    for table, want in expected.items():
        pd.testing.assert_frame_equal(_table(ResultsStore(db), table), want, check_dtype=False)


def _tamper_keys(path: Path, keys: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("keys"), "keys", pa.array([keys] * table.num_rows))
    pq.write_table(table, path)


def test_corrupt_units_are_named_and_skipped_the_rest_merges(paths) -> None:
    db, spool = paths
    store = ResultsStore(db, spool_dir=spool)
    good1 = write_unit(spool, [("items", {"experiment": "e"}, _items(["a", "b"]))])
    truncated = write_unit(spool, _writes(["a"]))
    truncated.write_bytes(truncated.read_bytes()[:-40])
    garbage = spool / (good1.name[:20] + "-0123456789ab-garbage.parquet")
    garbage.write_bytes(b"not parquet at all")
    foreign = write_unit(spool, [("items", {"experiment": "e"}, _items(["z"]))])
    _tamper_keys(foreign, '{"experimenX": "e"}')  # a well-formed unit naming a partition the schema lacks
    good2 = write_unit(spool, _writes(["a", "b"], codec="webp"))
    (spool / f".{good2.name}.123.tmp").write_bytes(b"half a unit")  # a writer that died before the rename
    assert store.query("SELECT count(*) AS n FROM compressed")["n"][0] == 2  # the overlay skips bad units too

    summary = merge_spool(ResultsStore(db), spool)
    assert summary.merged == [good1.name, good2.name]
    failed = dict(summary.failed)
    assert set(failed) == {truncated.name, garbage.name, foreign.name}
    assert all(name in reason for name, reason in failed.items())
    assert "unreadable" in failed[garbage.name]
    for name in failed:
        assert (spool / "failed" / name).exists() and (spool / "failed" / f"{name}.error.txt").exists()
    assert ResultsStore(db).query("SELECT count(*) AS n FROM items")["n"][0] == 2
    assert pending_units(spool) == []


def test_unit_that_does_not_fit_the_table_is_rolled_back_and_reported(paths) -> None:
    db, spool = paths
    ok = write_unit(spool, [("items", {"experiment": "e"}, _items(["a"]))])
    bad = write_unit(spool, [("items", {"experiment": "f"}, _items(["b"])),
                             ("compressed", KEYS, _compressed(["a"]).assign(bytes=None))])  # NOT NULL
    summary = merge_spool(ResultsStore(db), spool)
    assert summary.merged == [ok.name] and [n for n, _ in summary.failed] == [bad.name]
    assert "ConstraintException" in summary.failed[0][1]
    # nothing of the failed unit applied: its first write (items of f) was rolled back with the rest
    assert ResultsStore(db).query("SELECT DISTINCT experiment FROM items")["experiment"].tolist() == ["e"]


def test_snapshot_is_published_before_units_move_and_is_what_workers_read(paths) -> None:
    db, spool = paths
    worker = ResultsStore(db, spool_dir=spool)
    worker.replace_partitions([("items", {"experiment": "e"}, _items(["a", "b"]))])
    merge_spool(ResultsStore(db), spool, max_units=1)
    assert snapshot_path(spool).exists()
    db.rename(db.with_suffix(".elsewhere"))  # the results file can live where workers cannot see it
    assert worker.query("SELECT count(*) AS n FROM items")["n"][0] == 2
    worker.replace_partitions([("items", {"experiment": "e"}, _items(["c"]))])
    assert worker.query("SELECT item_id FROM items")["item_id"].tolist() == ["c"]
    assert worker.schema_version() >= 2


def test_max_units_leaves_the_rest_pending(paths) -> None:
    db, spool = paths
    store = ResultsStore(db, spool_dir=spool)
    _same_history(store)
    first = merge_spool(ResultsStore(db), spool, max_units=2)
    assert len(first.merged) == 2 and first.deferred == 4 and len(pending_units(spool)) == 4
    assert "left for the next merge" in first.describe()
    rest = merge_spool(ResultsStore(db), spool, keep_merged=False)
    assert len(rest.merged) == 4 and not (spool / "merged" / rest.merged[0]).exists()


def test_mpq_merge_cli(paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    db, spool = paths
    monkeypatch.setenv("MPQ_SPOOL_DIR", str(spool))
    monkeypatch.setenv("MPQ_DB", str(db))
    _same_history(ResultsStore(db, spool_dir=spool))
    broken = spool / "00000000000000000001-0123456789ab-broken.parquet"
    broken.write_bytes(b"x")
    assert mpq_main(["merge"]) == 1  # a failed unit makes the exit status non-zero
    out, err = capsys.readouterr()
    assert out.count("merged   ") == 6 and "merged 6 unit(s), 11 row(s); 1 failed" in out
    assert broken.name in err
    assert mpq_main(["merge"]) == 0
    assert "merged 0 unit(s)" in capsys.readouterr().out
    monkeypatch.delenv("MPQ_SPOOL_DIR")
    assert mpq_main(["merge"]) == 2


def test_spool_merge_sensor(paths, tmp_path: Path) -> None:
    from dagster import SkipReason, build_sensor_context

    from mpq_assets.defs.resources import MpqResource
    from mpq_assets.defs.sensors import spool_merge_sensor

    db, spool = paths
    sensor = spool_merge_sensor()
    assert sensor.name == "mpq_spool_merge"
    off = sensor(build_sensor_context(resources={"mpq": MpqResource(home=str(tmp_path / "off"))}))
    assert isinstance(off, SkipReason) and "spool mode is off" in off.skip_message
    resource = MpqResource(db_path=str(db), spool_dir=str(spool), home=str(tmp_path))
    resource.store().replace_partitions([("items", {"experiment": "e"}, _items(["a", "b"]))])
    tick = sensor(build_sensor_context(resources={"mpq": resource}))
    assert "merged 1 unit(s), 2 row(s)" in tick.skip_message
    assert ResultsStore(db).query("SELECT count(*) AS n FROM items")["n"][0] == 2
