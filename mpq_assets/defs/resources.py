"""Dagster resources: the settings and the ResultsStore, configurable per deployment."""

from __future__ import annotations

from dagster import ConfigurableResource

from mpq_assets.settings import Settings, load_settings
from mpq_assets.store import ResultsStore


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
        import os

        env = dict(os.environ)
        if self.home:  # everything below the configured home, whatever the environment says
            env["MPQ_HOME"] = self.home
            for var in ("MPQ_DB", "MPQ_ARTIFACTS", "MPQ_MODELS"):
                env.pop(var, None)
        if self.db_path:
            env["MPQ_DB"] = self.db_path
        if self.device:
            env["MPQ_DEVICE"] = self.device
        if self.spool_dir:
            env["MPQ_SPOOL_DIR"] = self.spool_dir
        if self.codec_batch:
            env["MPQ_CODEC_BATCH"] = str(self.codec_batch)
        return load_settings(env)

    def store(self) -> ResultsStore:
        s = self.settings()
        s.ensure_dirs()
        return ResultsStore(s.db_path, lock_timeout_s=s.lock_timeout_s, spool_dir=s.spool_dir)
