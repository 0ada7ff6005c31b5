"""Where every artifact lives on disk, and how it gets there: atomic writes, paths that stay in their root.

Under ``Settings.artifacts_dir`` (``data/artifacts`` by default), per experiment::

    <experiment>/originals/<item>.png|.flac                          normalised originals (``dataset``)
    <experiment>/compressed/<codec>/<bitrate>/<item><ext>            bitstreams (``compressed``)
    <experiment>/compressed/<codec>/<bitrate>/decoded/<item>.png|.flac   their lossless reconstructions
    <experiment>/predictions/<task>/<codec>__<bitrate>.npz           prediction arrays (one file per partition)
    hf_masks/<dataset>/<split>/                                      segmentation masks of HuggingFace datasets

and the HTML reports under ``Settings.reports_dir``. Every path is built here, so the layout is read in
one place; every part is joined with :func:`safe_join`, so an item id cannot leave its folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mpq_assets.settings import Settings

LOSSLESS_SUFFIX = {"audio": ".flac", "image": ".png"}  # originals and reconstructions


def originals_dir(settings: Settings, experiment: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "originals")


def original_path(settings: Settings, experiment: str, item_id: str, modality: str) -> Path:
    return safe_join(originals_dir(settings, experiment), f"{item_id}{LOSSLESS_SUFFIX[modality]}")


def bitstream_path(settings: Settings, experiment: str, codec: str, extension: str, bitrate: str,
                   item_id: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "compressed", codec, bitrate, f"{item_id}{extension}")


def decoded_path(bitstream: Path, modality: str) -> Path:
    """Where the lossless copy of a reconstruction lives (PNG / 16-bit FLAC), beside its bitstream."""
    return bitstream.parent / "decoded" / f"{bitstream.stem}{LOSSLESS_SUFFIX[modality]}"


def predictions_path(settings: Settings, experiment: str, task: str, codec: str, bitrate: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "predictions", task, f"{codec}__{bitrate}.npz")


def masks_dir(settings: Settings, dataset: str, split: str) -> Path:
    """Label maps a HuggingFace segmentation dataset's masks are written to once."""
    return safe_join(settings.artifacts_dir, "hf_masks", dataset.replace("/", "__"), split)


def trained_model_path(settings: Settings, experiment: str, codec: str, bitrate: str, seed: int) -> Path:
    """Where a model trained on one training variant with one seed is saved (safetensors)."""
    return safe_join(settings.artifacts_dir, experiment, "trained", f"{codec}__{bitrate}", f"seed{seed}.safetensors")


def report_path(reports_dir: Path, experiment: str) -> Path:
    return safe_join(reports_dir, f"{experiment}.html")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_join(root: str | os.PathLike[str], *parts: str) -> Path:
    """Join below root and refuse anything that resolves outside it (``..``, absolute parts, links)."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"path {'/'.join(parts)!r} escapes its root {base}")
    return target
