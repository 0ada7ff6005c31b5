"""One place that decides where data, results, artifacts and models live, and which device runs.

Every value comes from an environment variable with a sensible default, so the
same code runs in the demo, in tests (temp dirs) and on a cluster:

| variable        | default                    | meaning                                   |
|-----------------|----------------------------|-------------------------------------------|
| ``MPQ_HOME``    | ``<repo>/data``            | root of everything below                  |
| ``MPQ_DB``      | ``$MPQ_HOME/mpq.duckdb``   | the DuckDB results file                   |
| ``MPQ_ARTIFACTS`` | ``$MPQ_HOME/artifacts``  | bitstreams, cached originals              |
| ``MPQ_MODELS``  | ``$MPQ_HOME/models``       | converted / cached model weights          |
| ``MPQ_DEMO_DATA`` | ``<repo>/data``          | where the committed demo datasets live    |
| ``MPQ_DEVICE``  | ``auto``                   | ``auto`` (cuda > mps > cpu), or a torch device |
| ``MPQ_OFFLINE`` | ``0``                      | ``1``: never try a model hub              |
| ``MPQ_LOCK_TIMEOUT_S`` | ``120``             | how long a writer waits for the DuckDB lock |
| ``MPQ_SPOOL_DIR`` | unset                    | spool mode: writes become Parquet units, ``mpq merge`` applies them |
| ``MPQ_CODEC_BATCH`` | by device: 1 on CPU, 8 on a GPU | items per batched call of a neural codec's transforms |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path
    db_path: Path
    artifacts_dir: Path
    models_dir: Path
    demo_data_dir: Path
    device: str
    offline: bool
    lock_timeout_s: float
    spool_dir: Path | None = None  # set: results are spooled as Parquet units (docs/scale_out.md)
    codec_batch: str | None = None  # MPQ_CODEC_BATCH as given; ``device.codec_batch_size`` parses it

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.artifacts_dir, self.models_dir, self.db_path.parent):
            path.mkdir(parents=True, exist_ok=True)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``); call again to pick up changes."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("MPQ_HOME") or REPO_ROOT / "data").expanduser().resolve()
    return Settings(
        home=home,
        db_path=Path(env.get("MPQ_DB") or home / "mpq.duckdb").expanduser().resolve(),
        artifacts_dir=Path(env.get("MPQ_ARTIFACTS") or home / "artifacts").expanduser().resolve(),
        models_dir=Path(env.get("MPQ_MODELS") or home / "models").expanduser().resolve(),
        demo_data_dir=Path(env.get("MPQ_DEMO_DATA") or REPO_ROOT / "data").expanduser().resolve(),
        device=env.get("MPQ_DEVICE", "auto").strip() or "auto",
        offline=env.get("MPQ_OFFLINE", "0").strip().lower() in _TRUE,
        lock_timeout_s=float(env.get("MPQ_LOCK_TIMEOUT_S", "120")),
        spool_dir=Path(env["MPQ_SPOOL_DIR"]).expanduser().resolve() if env.get("MPQ_SPOOL_DIR") else None,
        codec_batch=env.get("MPQ_CODEC_BATCH", "").strip() or None,
    )
