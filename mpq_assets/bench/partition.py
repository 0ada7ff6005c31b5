"""``mpq bench-partition``: one partition's throughput on a device, bare model forward vs the platform's step.

What a GPU executor makes of its device: for each classifier, images/s of the
model's forward alone (inputs already preprocessed and on the device, batches of
the task's size) against the ``predictions`` step on a materialised
``compressed`` partition (read each reconstruction, preprocess, forward, store);
for LPIPS, its forward on (original, reconstruction) pairs already on the device
against the ``quality`` step (read both images, both through the network, store). The fraction full / bare says how much
of the device the step keeps busy (a well-fed step stays above ~70 %).

Throughput only: ViTs get random weights of the real architecture (built with
transformers and loaded through the normal checkpoint path), EfficientNet-Lite0
its packaged weights. Nothing here is a result; the bench's DuckDB is a
temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpq_assets.bench.measure import environment

PARTITION = ("jpeg", "50x")
MODELS = ("efficientnet-lite0", "vit-base", "vit-tiny")  # vit-*: random weights; vit-tiny for quick checks


@dataclass
class Throughput:
    """Images/s of one model on one device: forward alone and the whole step."""

    what: str
    device: str
    items: int
    batch: int
    bare_per_s: float
    full_per_s: float

    @property
    def fraction(self) -> float:
        return self.full_per_s / self.bare_per_s if self.bare_per_s else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, run: Callable[[], Any]) -> float:
    _sync(device)
    t0 = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - t0


def write_items(data_dir: Path, n: int, size: tuple[int, int]) -> None:
    """``n`` distinct photos of one size (the demo photos resized, then mirrored/rotated copies)."""
    from PIL import Image

    from mpq_assets.bench.spec import variant
    from mpq_assets.datasets.demo import DEMO_IMAGES
    from mpq_assets.media.image import write_image_png

    data_dir.mkdir(parents=True, exist_ok=True)
    photos = [np.asarray(Image.fromarray(load()).convert("RGB").resize(size, Image.BICUBIC))
              for _, load, _ in DEMO_IMAGES.values()]
    for k in range(n):
        write_image_png(data_dir / f"img{k:05d}.png", variant(photos[k % len(photos)], k // len(photos)))
    (data_dir / "labels.csv").write_text("file,label\n" + "".join(f"img{k:05d}.png,\n" for k in range(n)))


def random_vit(folder: Path, kind: str) -> Path:
    """A ViT classifier with random weights saved as a checkpoint folder: ViT-B/16 at 224 px, or a tiny one."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    labels = {i: f"class_{i}" for i in range(1000)}
    config = ViTConfig(num_labels=1000, id2label=labels, label2id={v: k for k, v in labels.items()},
                       **(small if kind == "vit-tiny" else {}))
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor().save_pretrained(folder)
    return folder


def _classifier(model: str, root: Path) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    return model if model == "efficientnet-lite0" else str(random_vit(root / model, model))


def _bare_classifier(model_ref: str, device: torch.device, images: Sequence[np.ndarray]) -> tuple[float, int]:
    from mpq_assets.tasks.registry import make_task

    task = make_task("classification", device=device, model=model_ref)
    backend = task.load()
    tensors = [backend.preprocess(im) for im in images]
    batches = [torch.stack(tensors[i:i + task.batch_size]).to(device) for i in range(0, len(tensors), task.batch_size)]
    with torch.inference_mode():
        backend.forward(batches[0])  # warm-up: kernels, cuDNN's choice of algorithms

        def run() -> None:
            for b in batches:
                backend.forward(b)

        return len(images) / _timed(device, run), task.batch_size


def _bare_lpips(device: torch.device, originals: Sequence[np.ndarray], recons: Sequence[np.ndarray]
                ) -> tuple[float, int]:
    """LPIPS's forward (both images through the network) on batches already on the device."""
    from mpq_assets.device import default_batch_size
    from mpq_assets.quality.image import LPIPSAlex, _to_nchw

    metric = LPIPSAlex(device)
    net, size = metric.model, default_batch_size(device, cpu=metric.cpu_batch, gpu=metric.gpu_batch)
    pairs = [(_to_nchw(originals[i:i + size], device, torch.float32) / 127.5 - 1.0,
              _to_nchw(recons[i:i + size], device, torch.float32) / 127.5 - 1.0) for i in range(0, len(recons), size)]
    with torch.inference_mode():
        net(*pairs[0])  # warm-up

        def run() -> None:
            for ref, dist in pairs:
                net(ref, dist)

        return len(recons) / _timed(device, run), size


def run_partition_bench(device: str, items: int = 64, size: tuple[int, int] = (512, 384),
                        models: Sequence[str] = ("efficientnet-lite0", "vit-base"), lpips: bool = True,
                        root: str | Path | None = None, say: Callable[[str], None] = print) -> list[Throughput]:
    """Materialise one ``compressed`` partition (jpeg@50x, on the CPU, untimed), then time each model's
    forward alone and the step that runs it on ``device``."""
    from mpq_assets.device import resolve_device
    from mpq_assets.experiments import Experiment, TaskSpec
    from mpq_assets.media.item import load_item
    from mpq_assets.pipeline.compress import compress_partitions
    from mpq_assets.pipeline.ingest import ingest
    from mpq_assets.pipeline.memo import METRIC_VALUES, PREDICTIONS
    from mpq_assets.pipeline.predict import predictions_partitions
    from mpq_assets.pipeline.quality import quality_partitions
    from mpq_assets.settings import load_settings
    from mpq_assets.store import ResultsStore

    target = resolve_device(device)
    keep = root is not None
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="mpq-bench-partition-"))
    models_dir = str(load_settings().models_dir)
    out: list[Throughput] = []
    try:
        with environment({"MPQ_HOME": str(root / "home"), "MPQ_DB": "", "MPQ_ARTIFACTS": "",
                           "MPQ_MODELS": models_dir, "MPQ_DEVICE": "cpu"}):
            say(f"writing {items} items of {size[0]}x{size[1]} and materialising {PARTITION[0]}@{PARTITION[1]} ...")
            write_items(root / "data", items, size)
            refs = {m: _classifier(m, root / "models") for m in models}
            base = Experiment("bench_partition", "image", "image_folder", {"root": str(root / "data")},
                              description="throughput of one partition (mpq bench-partition)",
                              tasks=tuple(TaskSpec(f"cls_{m.replace('-', '_')}", "classification", {"model": refs[m]})
                                          for m in models),
                              quality_metrics=("lpips_alex",))
            settings = load_settings()
            settings.ensure_dirs()
            store = ResultsStore(settings.db_path, lock_timeout_s=settings.lock_timeout_s)
            ingest(base, store, settings)
            compress_partitions(base, [PARTITION], store, settings)
            rows = store.query("SELECT c.decoded_path, i.original_path FROM compressed c JOIN items i "
                               "USING (experiment, item_id) WHERE c.experiment = ? ORDER BY c.item_id", [base.name])
            recons = [load_item(p, "image") for p in rows["decoded_path"]]
        with environment({"MPQ_HOME": str(root / "home"), "MPQ_DB": "", "MPQ_ARTIFACTS": "",
                           "MPQ_MODELS": models_dir, "MPQ_DEVICE": str(target)}):
            settings = load_settings()
            for m, spec in zip(models, base.tasks, strict=True):
                say(f"{m} on {target}: forward alone, then the predictions step ...")
                bare, batch = _bare_classifier(refs[m], target, recons)
                PREDICTIONS.clear()
                one = Experiment(base.name, "image", "image_folder", base.dataset_args, tasks=(spec,),
                                 quality_metrics=base.quality_metrics)
                seconds = _timed(target, lambda one=one: predictions_partitions(one, [PARTITION], store,
                                                                                          settings))
                out.append(Throughput(f"classification {m}", str(target), len(recons), batch, bare,
                                      len(recons) / seconds))
            if lpips:
                say(f"lpips_alex on {target}: the network alone, then the quality step ...")
                originals = [load_item(p, "image") for p in rows["original_path"]]
                bare, batch = _bare_lpips(target, originals, recons)
                METRIC_VALUES.clear()
                seconds = _timed(target, lambda: quality_partitions(base, [PARTITION], store, settings))
                out.append(Throughput("quality lpips_alex", str(target), len(recons), batch, bare,
                                      len(recons) / seconds))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return out


def table(results: Sequence[Throughput]) -> str:
    lines = [f"{'what':34s} {'device':8s} {'items':>5s} {'batch':>5s} {'bare img/s':>11s} {'step img/s':>11s} "
             f"{'step/bare':>9s}"]
    for r in results:
        lines.append(f"{r.what:34s} {r.device:8s} {r.items:5d} {r.batch:5d} {r.bare_per_s:11.1f} "
                     f"{r.full_per_s:11.1f} {r.fraction:9.0%}")
    return "\n".join(lines)


def to_json(results: Sequence[Throughput]) -> list[dict[str, Any]]:
    return [{**asdict(r), "fraction": r.fraction} for r in results]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512x384") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"{text}: both sides must be >= 32 px (LPIPS-Alex needs 31)")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="default: cuda where available, else cpu")
    parser.add_argument("--items", type=int, default=64, help="images in the partition (default 64)")
    parser.add_argument("--size", type=_size, default=(512, 384), help="image size WxH (default 512x384)")
    parser.add_argument("--models", nargs="*", choices=list(MODELS), default=["efficientnet-lite0", "vit-base"],
                        help="classifiers (vit-*: random weights; default efficientnet-lite0 vit-base)")
    parser.add_argument("--no-lpips", action="store_true", help="skip the LPIPS quality step")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    results = run_partition_bench(device, max(1, args.items), args.size, args.models, not args.no_lpips)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(results), indent=1))
    return 0


if __name__ == "__main__":  # python -m mpq_assets.bench.partition (scripts/device_check.sh: no Dagster there)
    _parser = argparse.ArgumentParser(prog="python -m mpq_assets.bench.partition", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
