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
| ``MPQ_WORKERS`` | the cores this process may use | worker processes for CPU codecs, metrics and models |
| ``MPQ_COMPRESSAI_WEIGHTS`` | unset (torch hub cache) | a folder holding the CompressAI zoo checkpoints |
| ``MPQ_ENCODEC_WEIGHTS`` | unset (torch hub cache) | a folder holding the EnCodec checkpoints |
| ``MPQ_MUSDB_ROOT`` | ``<repo>/data/musdb18hq`` | a MUSDB18-HQ copy (its ``train/`` and ``test/``) |

and the caches of the libraries MPQ loads models through, read as those libraries read them:
``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` / ``HF_HOME`` (HuggingFace hub), ``HF_DATASETS_CACHE``, and
``XDG_CACHE_HOME`` (openai-whisper's ``~/.cache/whisper``).

Nothing else in the package reads the environment: the steps hand these settings to the codecs,
tasks, metrics and datasets they build, so a deployment's ``MpqResource(home=...)`` decides where
every result, artifact and model conversion goes.
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
    workers: str | None = None      # MPQ_WORKERS as given; ``pipeline.workers.default_workers`` parses it
    compressai_weights: Path | None = None
    encodec_weights: Path | None = None
    musdb_root: Path = REPO_ROOT / "data" / "musdb18hq"
    hf_offline: bool = False        # HF_HUB_OFFLINE
    hf_hub_cache: Path = Path("~/.cache/huggingface/hub").expanduser()
    hf_datasets_cache: Path = Path("~/.cache/huggingface/datasets").expanduser()
    whisper_cache: Path = Path("~/.cache/whisper").expanduser()

    @property
    def hub_offline(self) -> bool:
        """No model hub may be tried: ``MPQ_OFFLINE`` or HuggingFace's own ``HF_HUB_OFFLINE``."""
        return self.offline or self.hf_offline

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.artifacts_dir, self.models_dir, self.db_path.parent):
            path.mkdir(parents=True, exist_ok=True)


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser().resolve() if value and value.strip() else None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``); call again to pick up changes."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("MPQ_HOME") or REPO_ROOT / "data").expanduser().resolve()
    xdg_cache = Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    hf_home = Path(env.get("HF_HOME") or xdg_cache / "huggingface").expanduser()  # huggingface_hub's own rule
    return Settings(
        home=home,
        db_path=Path(env.get("MPQ_DB") or home / "mpq.duckdb").expanduser().resolve(),
        artifacts_dir=Path(env.get("MPQ_ARTIFACTS") or home / "artifacts").expanduser().resolve(),
        models_dir=Path(env.get("MPQ_MODELS") or home / "models").expanduser().resolve(),
        demo_data_dir=Path(env.get("MPQ_DEMO_DATA") or REPO_ROOT / "data").expanduser().resolve(),
        device=env.get("MPQ_DEVICE", "auto").strip() or "auto",
        offline=env.get("MPQ_OFFLINE", "0").strip().lower() in _TRUE,
        lock_timeout_s=float(env.get("MPQ_LOCK_TIMEOUT_S", "120")),
        spool_dir=_path(env.get("MPQ_SPOOL_DIR")),
        codec_batch=env.get("MPQ_CODEC_BATCH", "").strip() or None,
        workers=env.get("MPQ_WORKERS", "").strip() or None,
        compressai_weights=_path(env.get("MPQ_COMPRESSAI_WEIGHTS")),
        encodec_weights=_path(env.get("MPQ_ENCODEC_WEIGHTS")),
        musdb_root=_path(env.get("MPQ_MUSDB_ROOT")) or REPO_ROOT / "data" / "musdb18hq",
        hf_offline=env.get("HF_HUB_OFFLINE", "0").strip().lower() in _TRUE,
        hf_hub_cache=Path(env.get("HF_HUB_CACHE") or hf_home / "hub").expanduser(),
        hf_datasets_cache=Path(env.get("HF_DATASETS_CACHE") or hf_home / "datasets").expanduser(),
        whisper_cache=xdg_cache / "whisper",
    )


def deployment_settings(home: str = "", db_path: str = "", device: str = "", spool_dir: str = "",
                        codec_batch: int = 0) -> Settings:
    """The environment's settings with a deployment's choices laid over them (``MpqResource``): a ``home``
    puts the database, artifacts and models below it, whatever ``MPQ_DB``/``MPQ_ARTIFACTS``/``MPQ_MODELS``
    say; empty values leave the environment's."""
    env = dict(os.environ)
    if home:
        env["MPQ_HOME"] = home
        for var in ("MPQ_DB", "MPQ_ARTIFACTS", "MPQ_MODELS"):
            env.pop(var, None)
    for var, value in (("MPQ_DB", db_path), ("MPQ_DEVICE", device), ("MPQ_SPOOL_DIR", spool_dir),
                       ("MPQ_CODEC_BATCH", str(codec_batch) if codec_batch else "")):
        if value:
            env[var] = value
    return load_settings(env)


def child_environment() -> tuple[tuple[str, str], ...]:
    """The variables the settings are read from, as a worker process started now would see them."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("MPQ_", "HF_", "TORCH_HOME"))))
