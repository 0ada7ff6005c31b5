"""Dagster resources: the settings and the ResultsStore, configurable per deployment."""

from __future__ import annotations

from dagster import ConfigurableResource

from mpq_assets.settings import Settings, deployment_settings
from mpq_assets.store import ResultsStore

GPU_POOL = "gpu"  # the pool of model-heavy assets: the deployment sets its concurrency to the devices it has


class MpqResource(ConfigurableResource):
    """Where results go and which device runs models.

    Empty fields fall back to the environment (``MPQ_HOME``, ``MPQ_DB``, ``MPQ_DEVICE``, ``MPQ_SPOOL_DIR``,
    ``MPQ_CODEC_BATCH``).
    ``device``: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:1``, ...
    ``spool_dir``: spool mode, for workers without a disk DuckDB can lock (docs/scale_out.md).
    ``codec_batch``: items per batched call of the neural codecs (``MPQ_CODEC_BATCH``; 0: by device).
    """

    home: str = ""
    db_path: str = ""
    device: str = ""
    spool_dir: str = ""
    codec_batch: int = 0

    def settings(self) -> Settings:
        return deployment_settings(self.home, self.db_path, self.device, self.spool_dir, self.codec_batch)

    def store(self) -> ResultsStore:
        s = self.settings()
        s.ensure_dirs()
        return ResultsStore(s.db_path, lock_timeout_s=s.lock_timeout_s, spool_dir=s.spool_dir)
