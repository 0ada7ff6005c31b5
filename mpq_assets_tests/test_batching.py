"""Cross-item batching and shared rate control: the batched / shared paths give the per-item answers.

- ``Codec.encode_batch`` / ``decode_batch`` default to the per-item calls; ``compressed`` hands items over in
  groups only to codecs whose batched calls are exact (``Codec.batched``). The neural codecs are not among
  them: batched convolutions are not bitwise equal to single-item ones (their module docstrings), so each
  item goes through the model alone -- checked here with random-weight models, as their own tests build them.
- Every codec's ``encode_to_budgets`` (all target ratios of one item, sharing encodes) answers exactly what
  ``encode_to_budget`` answers budget by budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.zoo import cheng2020_anchor, mbt2018
from skimage import data as skdata

from mpq_assets.codecs import get_codec
from mpq_assets.codecs.base import Codec
from mpq_assets.codecs.hific import HIFIC_REGIMES, HiFiC
from mpq_assets.codecs.hific_model import HIFIC_REGIMES as MODEL_REGIMES
from mpq_assets.codecs.hific_model import HiFiCConfig, HiFiCModel
from mpq_assets.codecs.neural_audio import Encodec24, Encodec48, build_model
from mpq_assets.codecs.neural_image import Cheng2020Anchor, Mbt2018
from mpq_assets.codecs.rate_control import fit_ladder_many, fit_ladder_many_batch
from mpq_assets.media.audio import Audio
from mpq_assets.pipeline.compress import Failed, _failures, _Job, _run_batch, _run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images() -> list[np.ndarray]:
    a = skdata.astronaut()
    return [np.ascontiguousarray(c) for c in (a[100:164, 150:246], a[200:250, 20:120], a[0:100, 0:60])]


def same(got, want) -> None:  # noqa: ANN001
    assert [(e.data, e.setting, e.rate_met) for e in got] == [(e.data, e.setting, e.rate_met) for e in want]


# ------------------------------------------------------------------------------------------------ neural codecs


def compressai_model(arch, quality: int, seed: int) -> torch.nn.Module:  # noqa: ANN001
    torch.manual_seed(seed)
    model = arch(quality=quality, pretrained=False)
    model.update(force=True)
    return model.eval()


def hific_codec() -> HiFiC:
    models = {}
    for seed, regime in enumerate(("low", "med")):
        torch.manual_seed(seed)
        models[regime] = HiFiCModel(HiFiCConfig(hyper_channels=6, n_residual_blocks=2, base_filters=4,
                                                latent_channels=8)).eval()
    return HiFiC.from_models(models)


def encodec_model(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name)
    with torch.no_grad():  # spread the codebooks as test_codecs_encodec does (they start all zero)
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_(0.0, 0.02 if name == "encodec-24khz" else 0.5)
    return model


def clips(sr: int) -> list[Audio]:
    rng = np.random.default_rng(sr)

    def clip(seconds: float, channels: int) -> Audio:
        t = np.arange(int(seconds * sr)) / sr
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.02 * rng.standard_normal((channels, t.size))
        return Audio(tone.astype(np.float32), sr)

    return [clip(0.5, 1), clip(0.5, 2), clip(0.3, 1)]


@pytest.mark.parametrize(("cls", "arch"), [(Mbt2018, mbt2018), (Cheng2020Anchor, cheng2020_anchor)])
def test_compressai_items_go_through_the_model_alone_and_budgets_share_encodes(cls, arch) -> None:  # noqa: ANN001
    codec = cls.from_model({q: compressai_model(arch, q, q) for q in (1, 2, 3)})
    assert not codec.batched
    items = images()
    assert codec.encode_batch(items, 2) == [codec.encode(item, 2) for item in items]
    for item in items:
        sizes = [len(codec.encode(item, q)) for q in (1, 2, 3)]
        budgets = [sizes[0] - 1, sizes[0], sizes[1], (sizes[1] + sizes[2]) // 2, sizes[2] + 10]
        shared = codec.encode_to_budgets(item, budgets)
        same(shared, [codec.encode_to_budget(item, b) for b in budgets])
        assert sum(e.trials for e in shared) <= 3  # each quality encoded at most once for all five budgets


def test_hific_budgets_share_encodes() -> None:
    assert HIFIC_REGIMES == MODEL_REGIMES  # hific.py keeps its own copy so importing it does not import torch
    codec = hific_codec()
    assert not codec.batched
    for item in images():
        sizes = [len(codec.encode(item, r)) for r in ("low", "med")]
        budgets = [sizes[0] - 1, sizes[0], sizes[1], sizes[1] * 2]
        shared = codec.encode_to_budgets(item, budgets)
        same(shared, [codec.encode_to_budget(item, b) for b in budgets])
        assert sum(e.trials for e in shared) <= 2


@pytest.mark.parametrize(("cls", "name", "sr"), [(Encodec24, "encodec-24khz", 24000),
                                                 (Encodec48, "encodec-48khz", 48000)])
def test_encodec_budgets_share_encodes(cls, name: str, sr: int) -> None:  # noqa: ANN001
    codec = cls.from_model(encodec_model(name, 0))
    assert not codec.batched
    for item in clips(sr):
        ladder = codec.ladder(item)
        budgets = [codec.expected_size(item, ladder[1]) + d for d in (-1, 0, 3)] + [10**9]
        shared = codec.encode_to_budgets(item, budgets)
        same(shared, [codec.encode_to_budget(item, b) for b in budgets])
        assert sum(e.trials for e in shared) == len({e.setting for e in shared})


# ------------------------------------------------------------------------------- the batch API and its helpers


class _Sizes(Codec):
    """Item k at rung i encodes to ``sizes[k][i]`` bytes; a batched codec whose batches are trivially exact."""

    name, modality, extension, description = "sizes", "image", ".bin", "test ladder"
    batched = True

    def __init__(self, sizes: list[list[int]]) -> None:
        self.sizes, self.batches = sizes, 0

    def ladder(self, item):  # noqa: ANN001, ANN201
        return list(range(len(self.sizes[int(item[0, 0, 0])])))

    def encode(self, item, setting):  # noqa: ANN001, ANN201
        k = int(item[0, 0, 0])
        return bytes([k]) * self.sizes[k][setting]

    def encode_batch(self, items, setting):  # noqa: ANN001, ANN201
        self.batches += 1
        return super().encode_batch(items, setting)

    def encode_to_budgets_batch(self, items, budgets):  # noqa: ANN001, ANN201
        return fit_ladder_many_batch(self, items, budgets)

    def decode(self, data, like):  # noqa: ANN001, ANN201
        return like


def sizes_items(n: int) -> tuple[list[list[int]], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    sizes = [sorted(rng.integers(10, 3_000, 60).tolist()) for _ in range(n)]
    return sizes, [np.full((40, 40, 3), k, np.uint8) for k in range(n)]


def test_lockstep_ladder_search_equals_the_per_item_search() -> None:
    sizes, items = sizes_items(5)
    codec = _Sizes(sizes)
    budgets = [[150, 800, 2500, 6000, 50] for _ in sizes]
    batched = fit_ladder_many_batch(codec, items, budgets)
    for k, got in enumerate(batched):
        want = fit_ladder_many(codec, items[k], budgets[k])
        assert [(e.data, e.setting, e.rate_met, e.trials) for e in got] == \
            [(e.data, e.setting, e.rate_met, e.trials) for e in want]
    assert codec.batches < sum(e.trials for row in batched for e in row)  # rungs shared between items


def test_compressed_batches_give_the_rows_of_the_per_item_path(tmp_path: Path) -> None:
    from mpq_assets.media.image import write_image_png

    sizes, items = sizes_items(4)
    codec = _Sizes(sizes)
    jobs = []
    for k, item in enumerate(items):
        write_image_png(tmp_path / f"i{k}.png", item)
        ratios = (20.0, 50.0, 500.0)
        jobs.append(_Job(codec, f"i{k}", str(tmp_path / f"i{k}.png"), "image", ratios,
                         tuple(tmp_path / "out" / f"{r:g}" / f"i{k}.bin" for r in ratios)))
    jobs.append(_Job(codec, "missing", str(tmp_path / "missing.png"), "image", (20.0,), (tmp_path / "m.bin",)))
    keep = ("bytes", "setting", "rate_met", "path", "decoded_path")
    batched = [_failures(r) for r in _run_batch(codec, jobs)]
    single = [_failures(_run_job(job)) for job in jobs]
    assert [[{k: r[k] for k in keep} if isinstance(r, dict) else r for r in rows] for rows in batched] == \
        [[{k: r[k] for k in keep} if isinstance(r, dict) else r for r in rows] for rows in single]
    assert isinstance(batched[-1][0], Failed) and "missing.png" in batched[-1][0].error


def test_default_batch_calls_are_the_per_item_calls() -> None:
    codec = get_codec("jpeg")
    assert codec.parallel_encode and not codec.batched
    items = images()
    data = codec.encode_batch(items, 30)
    assert data == [codec.encode(item, 30) for item in items]
    for got, item, d in zip(codec.decode_batch(data, items), items, data, strict=True):
        np.testing.assert_array_equal(got, codec.decode(d, item))
