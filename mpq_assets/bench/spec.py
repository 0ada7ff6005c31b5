"""What a benchmark run does: the sweep (items, codecs, ratios, metrics, task) both paths run on.

The items are written once, before either path runs, as normalised originals
(8-bit RGB PNG, 16-bit FLAC) in one folder with a ``labels.csv``: the baseline
reads that folder, the platform ingests it as an ``image_folder`` /
``audio_folder`` dataset. ``scale`` > 1 adds copies with distinct ids; a copy is
mirrored / rotated (images) or circularly shifted (audio) so that no two files
are byte-identical (the platform scores identical files once, which would
flatter it).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpq_assets.media.item import Modality

SWEEPS: dict[str, dict[str, Any]] = {
    # the demo image sweep: every built-in image codec that is ready, the full ratio grid
    "image": dict(experiment="demo_images", modality="image", metrics=("psnr", "ms_ssim", "lpips_alex"),
                  task="classification", task_args={"model": "efficientnet-lite0"}),
    # the demo speech sweep with its cheap metrics
    "speech": dict(experiment="demo_speech", modality="audio", metrics=("snr", "si_sdr", "stoi"),
                   task="asr", task_args={"model": "tiny.en-ct2"}),
}


@dataclass(frozen=True)
class BenchItem:
    item_id: str
    path: str  # the normalised original in the bench's data folder
    label: str  # "" when the item has none


@dataclass(frozen=True)
class BenchSpec:
    """One sweep, identical for both paths."""

    sweep: str
    codecs: tuple[str, ...]
    ratios: tuple[str, ...]
    metrics: tuple[str, ...]
    task: str
    task_args: dict[str, Any] = field(default_factory=dict)
    subset: int | None = None
    scale: int = 1
    workers: int | None = None        # platform worker processes (None: MPQ_WORKERS or the cores)
    torch_threads: int | None = None  # torch intra-op threads in both paths (None: torch's default)

    @property
    def modality(self) -> Modality:
        return SWEEPS[self.sweep]["modality"]

    @property
    def partitions(self) -> list[tuple[str, str]]:
        return [(c, r) for c in self.codecs for r in self.ratios]

    def experiment(self, data_dir: Path):  # noqa: ANN201 - mpq_assets.experiments.Experiment
        from mpq_assets.experiments import Experiment, TaskSpec

        dataset = "image_folder" if self.modality == "image" else "audio_folder"
        return Experiment(f"bench_{self.sweep}", self.modality, dataset, {"root": str(data_dir)},
                          description=f"benchmark copy of the {self.sweep} demo sweep",
                          tasks=(TaskSpec(self.task, self.task, dict(self.task_args)),),
                          quality_metrics=tuple(self.metrics))


def default_spec(sweep: str, codecs: Sequence[str] | None = None, ratios: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, say: Callable[[str], None] = print, **kwargs: Any) -> BenchSpec:
    """The demo sweep of ``sweep``; codecs default to every registered codec of its modality that is ready."""
    from mpq_assets.codecs import RATIOS, codec_names, get_codec

    if sweep not in SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; choose one of {', '.join(SWEEPS)}")
    info = SWEEPS[sweep]
    if codecs is None:
        codecs = []
        for name in codec_names(info["modality"]):
            reason = get_codec(name).weights_missing()
            if reason:
                say(f"skipping codec {name}: {reason.splitlines()[0][:160]}")
            else:
                codecs.append(name)
    known = codec_names(info["modality"])
    unknown = [c for c in codecs if c not in known]
    if unknown:
        raise ValueError(f"not {info['modality']} codecs here: {', '.join(unknown)} (known: {', '.join(known)})")
    bad_ratios = [r for r in (ratios or ()) if r not in RATIOS]
    if bad_ratios:
        raise ValueError(f"unknown ratios {bad_ratios}; choose from {', '.join(RATIOS)}")
    return BenchSpec(sweep, tuple(codecs), tuple(ratios or RATIOS), tuple(metrics or info["metrics"]),
                     info["task"], dict(info["task_args"]), **kwargs)


def variant(item: Any, k: int) -> Any:
    """Copy ``k`` of an item, not byte-identical to any other copy (k = 0: the item itself)."""
    from mpq_assets.media.audio import Audio

    if k == 0:
        return item
    if isinstance(item, Audio):
        return Audio(np.ascontiguousarray(np.roll(item.samples, k * 1009, axis=1)), item.sample_rate)
    flips = [item[:, ::-1], item[::-1, :], item[::-1, ::-1]]
    out = flips[(k - 1) % 3]
    if k > 3:
        out = np.roll(out, k // 3, axis=1)
    return np.ascontiguousarray(out)


def write_items(spec: BenchSpec, data_dir: Path) -> list[BenchItem]:
    """Normalise the demo experiment's items (``subset``, ``scale``) into ``data_dir``; the list both paths read."""
    from mpq_assets.datasets.base import check_item_id
    from mpq_assets.experiments import EXPERIMENTS
    from mpq_assets.media.audio import Audio, quantise_pcm16, validate_audio, write_audio_flac
    from mpq_assets.media.image import write_image_png

    data_dir.mkdir(parents=True, exist_ok=True)
    sources = list(EXPERIMENTS[SWEEPS[spec.sweep]["experiment"]].make_dataset().items())
    if spec.subset is not None:
        sources = sources[:spec.subset]
    items: list[BenchItem] = []
    for src in sources:
        base = src.load()
        if isinstance(base, Audio):
            base = quantise_pcm16(validate_audio(base, what=src.item_id))
        for k in range(spec.scale):
            item_id = check_item_id(src.item_id if k == 0 else f"{src.item_id}__r{k}")
            item = variant(base, k)
            if isinstance(item, Audio):
                path = data_dir / f"{item_id}.flac"
                write_audio_flac(path, item)
            else:
                path = data_dir / f"{item_id}.png"
                write_image_png(path, item)
            items.append(BenchItem(item_id, str(path), src.label or ""))  # as the platform reads it back
    with (data_dir / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        for item in items:
            writer.writerow([Path(item.path).name, item.label])
    return sorted(items, key=lambda i: i.item_id)
