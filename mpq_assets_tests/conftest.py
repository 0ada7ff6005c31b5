"""Shared fixtures: every test gets its own MPQ_HOME (DuckDB file, artifacts) in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpq_assets.settings import Settings, load_settings
from mpq_assets.store import ResultsStore


@pytest.fixture()
def mpq_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mpq_home"
    monkeypatch.setenv("MPQ_HOME", str(home))
    for var in ("MPQ_DB", "MPQ_ARTIFACTS", "MPQ_MODELS"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture()
def settings(mpq_home: Path) -> Settings:
    s = load_settings(dict(os.environ))
    s.ensure_dirs()
    return s


@pytest.fixture()
def store(settings: Settings) -> ResultsStore:
    return ResultsStore(settings.db_path, lock_timeout_s=30)
