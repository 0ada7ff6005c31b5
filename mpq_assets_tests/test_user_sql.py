"""SQL from users: ``mpq query`` reads the results file and touches nothing else; the DuckDB CLI opens it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mpq_assets.cli import main
from mpq_assets.store import ResultsStore

DUCKDB_CLI = Path(sys.executable).with_name("duckdb")


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "mpq.duckdb"
    rows = pd.DataFrame({"item_id": ["a", "b"], "modality": ["image"] * 2, "source": ["x"] * 2,
                         "original_path": ["/a.png", "/b.png"], "label": ["cat", None], "raw_bytes": [12, 12]})
    ResultsStore(path).replace_partition("items", {"experiment": "e"}, rows)
    return path


def _refused(db: Path, sql: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["query", sql, "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mpq query: ") and "Traceback" not in err, err
    return err


@pytest.mark.fast
def test_user_sql_reads_the_results_and_nothing_else(db: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "SELECT item_id, label FROM items ORDER BY item_id", "--db", str(db),
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["item_id,label", "a,cat", "b,"]
    outside = tmp_path / "secret.csv"
    outside.write_text("x\n1\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    other = tmp_path / "other.duckdb"
    assert "disabled by configuration" in _refused(db, f"COPY (SELECT 1) TO '{target}'", capsys)
    assert "disabled by configuration" in _refused(db, f"SELECT * FROM read_csv_auto('{outside}')", capsys)
    assert "disabled by configuration" in _refused(db, f"ATTACH '{other}' (READ_WRITE)", capsys)
    assert "disabled by configuration" in _refused(db, "INSTALL httpfs", capsys)
    assert "disabled through configuration" in _refused(db, "LOAD httpfs", capsys)
    assert "locked" in _refused(db, "SET enable_external_access = true", capsys)
    assert "read-only" in _refused(db, "DELETE FROM items", capsys)
    assert "does not exist" in _refused(db, "SELECT * FROM no_such_table", capsys)
    assert not target.exists() and not other.exists()
    assert main(["query", "SELECT 1", "--db", str(tmp_path / "none.duckdb")]) == 1
    assert "no results database" in capsys.readouterr().err


@pytest.mark.fast
def test_the_duckdb_cli_opens_the_results_file_read_only(db: Path) -> None:
    assert DUCKDB_CLI.is_file(), "the duckdb-cli package puts the DuckDB shell in the venv"
    run = subprocess.run([str(DUCKDB_CLI), "-readonly", "-csv", str(db), "-c",
                          "SELECT count(*) AS n FROM items; SELECT count(*) AS v FROM rate_summary"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["n", "2", "v", "0"]
    write = subprocess.run([str(DUCKDB_CLI), "-readonly", str(db), "-c", "DELETE FROM items"],
                           capture_output=True, text=True, timeout=60)
    assert write.returncode != 0 and "read-only" in write.stderr
