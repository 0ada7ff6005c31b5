"""``mpq bench-codecs``: encode and decode throughput of the neural codecs, per device and batch size.

For each neural codec at one mid setting: images per second (demo photos at
512x384, an ImageNet-like size) or seconds of audio per second (demo speech,
cut to one length so that whole-clip models can batch), on the CPU and on a GPU
where there is one, one item at a time and in device batches. Each figure is the
best of ``repeat`` timed passes after one untimed warm-up pass (model loads,
kernel selection). As a check, every file a batch wrote is decoded alone on
the CPU and compared with what the batch decoded: the largest difference (8-bit
levels for images, sample values for audio) is in the table, so a GPU run also
shows that its files decode on a CPU-only machine.

Weights: the real ones where cached (``mpq models``), else random weights of
the real architectures -- fine for throughput, which does not depend on the
values except through the number of bits coded (the table says which). These
are timings only: nothing here is stored as a result.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mpq_assets.codecs.base import Codec
from mpq_assets.media.audio import Audio
from mpq_assets.media.item import Item

IMAGE_SIZE = (384, 512)  # (H, W): padded sizes stay multiples of 64, so every image shares one device batch
AUDIO_SECONDS = 2.0


@dataclass(frozen=True)
class CodecCase:
    """One neural codec to time: how to build it with random weights, and the setting to code at."""

    name: str
    modality: str
    setting: Any
    random: Callable[[Any, int], Codec]  # (device, batch size) -> codec with random weights
    real: Callable[[Any, int], Codec]    # (device, batch size) -> codec with the cached real weights


def _compressai(arch: str, cls_name: str, quality: int) -> tuple[Callable, Callable]:
    def random(device: Any, batch: int) -> Codec:
        import compressai.zoo
        import torch

        from mpq_assets.codecs import neural_image

        torch.manual_seed(quality)
        model = getattr(compressai.zoo, arch.replace("-", "_"))(quality=quality, pretrained=False)
        return getattr(neural_image, cls_name).from_model(model, quality=quality, device=device, batch_size=batch)

    def real(device: Any, batch: int) -> Codec:
        from mpq_assets.codecs import neural_image

        return getattr(neural_image, cls_name)(device=device, batch_size=batch)

    return random, real


def _hific_random(device: Any, batch: int) -> Codec:
    import torch

    from mpq_assets.codecs.hific import HiFiC
    from mpq_assets.codecs.hific_model import HiFiCModel

    torch.manual_seed(0)
    return HiFiC.from_models({"low": HiFiCModel().eval().to(device)}, batch_size=batch)


def _hific_real(device: Any, batch: int) -> Codec:
    from mpq_assets.codecs.hific import HiFiC

    return HiFiC(device=device, batch_size=batch)


def _encodec(name: str, cls_name: str) -> tuple[Callable, Callable]:
    def random(device: Any, batch: int) -> Codec:
        import torch

        from mpq_assets.codecs import neural_audio

        torch.manual_seed(0)
        model = neural_audio.build_model(name)
        with torch.no_grad():  # codebooks start all zero: spread them so codes vary as a trained model's do
            for layer in model.quantizer.vq.layers:
                layer._codebook.embed.normal_(0.0, 0.5)
        return getattr(neural_audio, cls_name).from_model(model.to(device), batch_size=batch)

    def real(device: Any, batch: int) -> Codec:
        from mpq_assets.codecs import neural_audio

        return getattr(neural_audio, cls_name)(device=str(device), batch_size=batch)

    return random, real


CASES: dict[str, CodecCase] = {
    "mbt2018": CodecCase("mbt2018", "image", 4, *_compressai("mbt2018", "Mbt2018", 4)),
    "cheng2020-anchor": CodecCase("cheng2020-anchor", "image", 3,
                                  *_compressai("cheng2020-anchor", "Cheng2020Anchor", 3)),
    "hific": CodecCase("hific", "image", "low", _hific_random, _hific_real),
    "encodec-24khz": CodecCase("encodec-24khz", "audio", 6.0, *_encodec("encodec-24khz", "Encodec24")),
    "encodec-48khz": CodecCase("encodec-48khz", "audio", 6.0, *_encodec("encodec-48khz", "Encodec48")),
}


@dataclass(frozen=True)
class Row:
    codec: str
    device: str
    batch: int
    weights: str           # "real" or "random"
    items: int
    unit: str              # "images" or "audio s"
    encode_per_s: float    # units coded per second of wall time
    decode_per_s: float
    bytes_per_item: float
    peak_device_mb: float | None
    alone_max_diff: float  # each batch-written file decoded alone on the CPU vs the batch decode (levels / samples)


def demo_items(modality: str, count: int) -> list[Item]:
    """``count`` demo items of one size: photos cut and scaled to 512x384, speech clips cut to 2 s at 48 kHz."""
    from mpq_assets.datasets.demo import DemoImages, DemoSpeech

    if modality == "image":
        from PIL import Image

        out = []
        for source in DemoImages().items():
            image = source.load()
            image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
            h, w = IMAGE_SIZE
            pil = Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)))
            scale = max(w / pil.width, h / pil.height)
            pil = pil.resize((max(w, round(pil.width * scale)), max(h, round(pil.height * scale))), Image.BICUBIC)
            left, top = (pil.width - w) // 2, (pil.height - h) // 2
            out.append(np.ascontiguousarray(np.asarray(pil.crop((left, top, left + w, top + h)))))
        return [out[k % len(out)] for k in range(count)]
    clips = []
    for source in DemoSpeech().items():
        audio = source.load()
        frames = int(AUDIO_SECONDS * audio.sample_rate)
        samples = np.tile(audio.samples, (1, -(-frames // audio.frames)))[:, :frames]
        clips.append(Audio(np.ascontiguousarray(samples, dtype=np.float32), audio.sample_rate))
    return [clips[k % len(clips)] for k in range(count)]


def _units(items: Sequence[Item]) -> float:
    return float(sum(item.duration_s if isinstance(item, Audio) else 1 for item in items))


def _values(item: Item) -> np.ndarray:
    return (item.samples if isinstance(item, Audio) else item).astype(np.float64)


def _timed(run: Callable[[], Any], device: Any, repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``run`` (synchronising a GPU), and the last result."""
    import torch

    best, result = float("inf"), None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench_case(case: CodecCase, device: Any, batch: int, items: Sequence[Item], repeat: int,
               weights: str = "auto") -> Row:
    """Encode and decode throughput of one codec on one device at one batch size."""
    import torch

    codec = case.real(device, batch)
    use_real = weights == "real" or (weights == "auto" and codec.weights_missing() is None)
    if not use_real:
        codec = case.random(device, batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    data = codec.encode_batch(list(items), case.setting)  # warm-up (loads, kernel choice) and the files
    codec.decode_batch(data, list(items))
    encode_s, data = _timed(lambda: codec.encode_batch(list(items), case.setting), device, repeat)
    decode_s, decoded = _timed(lambda: codec.decode_batch(data, list(items)), device, repeat)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    cpu = torch.device("cpu")  # every file of the batch decodes alone, on the CPU, to what the batch decoded
    alone = case.real(cpu, 1) if use_real else case.random(cpu, 1)
    diff = max(float(np.abs(_values(alone.decode(d, item)) - _values(batch)).max())
               for d, item, batch in zip(data, items, decoded, strict=True))
    units = _units(items)
    return Row(case.name, device.type, batch, "real" if use_real else "random", len(items),
               "images" if case.modality == "image" else "audio s", units / encode_s, units / decode_s,
               float(np.mean([len(d) for d in data])), peak, diff)


def run_codec_bench(codecs: Sequence[str], devices: Sequence[str], batches: Sequence[int], count: int,
                    repeat: int, weights: str = "auto", progress: Callable[[str], None] = print) -> list[Row]:
    import torch

    rows = []
    for name in codecs:
        case = CASES[name]
        items = demo_items(case.modality, count)
        for device_name in devices:
            device = torch.device(device_name)
            for batch in batches:
                progress(f"{name} on {device_name}, batch {batch}, {len(items)} items ...")
                rows.append(bench_case(case, device, batch, items, repeat, weights))
    return rows


def table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows, with each batch's speed-up over batch 1 on the same device."""
    base = {(r.codec, r.device): r for r in rows if r.batch == 1}
    lines = ["| codec | device | batch | weights | encode | decode | vs batch 1 (enc / dec) | bytes/item | "
             "peak GPU MB | alone vs batch |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = base.get((r.codec, r.device))
        vs = f"{r.encode_per_s / b.encode_per_s:.2f}x / {r.decode_per_s / b.decode_per_s:.2f}x" if b else "-"
        unit = "img/s" if r.unit == "images" else "audio-s/s"
        peak = f"{r.peak_device_mb:.0f}" if r.peak_device_mb is not None else "-"
        lines.append(f"| {r.codec} | {r.device} | {r.batch} | {r.weights} | {r.encode_per_s:.2f} {unit} | "
                     f"{r.decode_per_s:.2f} {unit} | {vs} | {r.bytes_per_item:.0f} | {peak} | {r.alone_max_diff:.3g} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codecs", nargs="*", choices=list(CASES), help="default: all neural codecs")
    parser.add_argument("--devices", nargs="*", help="default: cpu, and cuda where available")
    parser.add_argument("--batches", nargs="*", type=int, help="batch sizes (default: 1 4 on CPU runs, 1 8 with "
                        "a GPU)")
    parser.add_argument("--items", type=int, default=8, help="items per pass (default 8)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes; the best is reported (default 2)")
    parser.add_argument("--weights", choices=["auto", "real", "random"], default="auto",
                        help="auto: the real weights where cached, else random ones of the same architecture")
    parser.add_argument("--torch-threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    batches = args.batches or ([1, 8] if "cuda" in devices else [1, 4])
    rows = run_codec_bench(args.codecs or list(CASES), devices, batches, max(1, args.items), max(1, args.repeat),
                           args.weights)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0
