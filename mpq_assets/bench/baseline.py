"""Path (a): the loop a researcher writes by hand, without the platform.

For every item, every codec and every target ratio: plain bisection over the
codec's ladder for the highest setting whose bitstream fits the budget, one
decode, each quality metric on that one pair, the model on that one
reconstruction. Then the task scores per (codec, ratio), and the results saved
as CSV. No batching, no caching, no worker processes, no database.

Decoded audio is kept as 16-bit PCM (a FLAC round trip in memory), as a decoder
writing a WAV gives it and as the platform caches it: float decoder output and its
16-bit file differ enough to move STOI in the third decimal and flip a Whisper
beam, and both paths must score the same samples.

It uses the platform's own codec, metric and model objects (the registries), so
its numbers must equal the platform's; only how the work is organised differs.
The harness times each stage with ``clock``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpq_assets.bench.measure import Clock
from mpq_assets.bench.spec import BenchItem, BenchSpec
from mpq_assets.codecs import Codec, Encoded, budget_bytes, get_codec, parse_ratio
from mpq_assets.media.audio import Audio, decode_audio_bytes, load_audio
from mpq_assets.media.image import load_image


def as_16bit(decoded: Any) -> Any:
    """Decoded audio as its 16-bit FLAC holds it; images (already 8-bit) unchanged."""
    if not isinstance(decoded, Audio):
        return decoded
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, decoded.samples.T, decoded.sample_rate, format="FLAC", subtype="PCM_16")
    return decode_audio_bytes(buf.getvalue())


def bisection(codec: Codec, item: Any, budget: int) -> Encoded:
    """The highest ladder rung whose bitstream fits ``budget``: textbook bisection, nothing cached across calls."""
    ladder = list(codec.ladder(item))
    encoded: dict[int, bytes] = {}

    def size(rung: int) -> int:
        if rung not in encoded:
            encoded[rung] = codec.encode(item, ladder[rung])
        return len(encoded[rung])

    if size(0) > budget:  # even the lowest setting is too large: the target cannot be met
        return Encoded(encoded[0], codec.label(ladder[0]), False, len(encoded))
    lo, hi = 0, len(ladder) - 1  # rung lo fits
    if size(hi) <= budget:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return Encoded(encoded[lo], codec.label(ladder[lo]), True, len(encoded))


def run_baseline(spec: BenchSpec, items: list[BenchItem], out_dir: Path, clock: Clock) -> dict[str, Any]:
    from mpq_assets.device import resolve_device
    from mpq_assets.quality.registry import make_metric
    from mpq_assets.tasks.registry import make_task

    device = resolve_device(None)
    codecs = [get_codec(name) for name in spec.codecs]
    metrics = [make_metric(name, device) for name in spec.metrics]
    task = make_task(spec.task, device=device, **spec.task_args)
    load = load_audio if spec.modality == "audio" else load_image

    compressed, quality, summaries = [], [], []
    arrays: dict[str, np.ndarray] = {}
    predictions: dict[tuple[str, str], dict[str, Any]] = {}  # (codec, bitrate) -> item_id -> Prediction
    references: dict[str, Any] = {}
    encodes = 0
    for item in items:
        with clock("load"):
            original = load(item.path)
        with clock("predict"):
            references[item.item_id] = task.predict([original])[0]
        for codec in codecs:
            for bitrate in spec.ratios:
                budget = budget_bytes(original, parse_ratio(bitrate))
                with clock("encode"):
                    encoded = bisection(codec, original, budget)
                encodes += encoded.trials
                with clock("store"):
                    path = out_dir / "bitstreams" / codec.name / bitrate / f"{item.item_id}{codec.extension}"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(encoded.data)
                compressed.append(dict(codec=codec.name, bitrate=bitrate, item_id=item.item_id,
                                       bytes=len(encoded.data), setting=encoded.setting, rate_met=encoded.rate_met))
                with clock("decode"):
                    reconstruction = as_16bit(codec.decode(encoded.data, like=original))
                with clock("quality"):
                    for metric in metrics:
                        if metric.applicable(original):
                            continue
                        metric.reset()
                        metric.update([original], [reconstruction])
                        quality.append(dict(codec=codec.name, bitrate=bitrate, item_id=item.item_id,
                                            metric=metric.info.name, value=float(metric.compute()[0])))
                with clock("predict"):
                    prediction = task.predict([reconstruction])[0]
                predictions.setdefault((codec.name, bitrate), {})[item.item_id] = prediction
    scores = []
    labels = {item.item_id: item.label for item in items}
    with clock("predict"):  # scoring the predictions
        for (codec_name, bitrate), preds in predictions.items():
            ids = sorted(preds)
            rows = task.score_labels(ids, [preds[i] for i in ids], [labels[i] for i in ids])
            rows += task.score_reference(ids, [preds[i] for i in ids], [references[i] for i in ids])
            scores += [dict(codec=codec_name, bitrate=bitrate, item_id=s.item_id, metric=s.metric, value=s.value)
                       for s in rows]
    with clock("store"):
        for (codec_name, bitrate), preds in [*predictions.items(), (("reference", "reference"), references)]:
            for item_id, p in preds.items():
                summaries.append(dict(codec=codec_name, bitrate=bitrate, item_id=item_id,
                                      prediction=json.dumps(p.summary)))
                if p.array is not None:
                    arrays[f"{codec_name}|{bitrate}|{item_id}"] = p.array
        out_dir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(compressed).to_csv(out_dir / "compressed.csv", index=False)
        pd.DataFrame(quality, columns=["codec", "bitrate", "item_id", "metric", "value"]).to_csv(
            out_dir / "quality.csv", index=False)
        pd.DataFrame(summaries).to_csv(out_dir / "predictions.csv", index=False)
        pd.DataFrame(scores, columns=["codec", "bitrate", "item_id", "metric", "value"]).to_csv(
            out_dir / "scores.csv", index=False)
        np.savez(out_dir / "arrays.npz", **arrays)
    return {"encodes": encodes}
