"""Cross-item batching and shared rate control.

- The neural codecs batch their device transforms (``batch_size`` > 1; 1 on CPU by default): every file a
  batch writes decodes alone, about as the single-item file does, and a batched decode is the per-item
  decode within one level / 1e-5 (batched convolutions differ in the last bits). Random-weight models, as
  their own tests build them.
- ``Codec.encode_batch`` / ``decode_batch`` default to the per-item calls; ``compressed`` hands items over in
  groups to codecs whose ``batched`` is true.
- Every codec's ``encode_to_budgets`` (all target ratios of one item, sharing encodes) answers exactly what
  ``encode_to_budget`` answers budget by budget, and the lockstep batch search what the per-item one does.
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
from mpq_assets.media.item import raw_bytes
from mpq_assets.pipeline.compress import EncodeJob, Failed, Target, failures, map_jobs, run_batch, run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def targets(raw: int, ratios: tuple[float, ...], paths: list[Path]) -> tuple[Target, ...]:
    return tuple(Target.at(f"{r:g}x", raw, path) for r, path in zip(ratios, paths, strict=True))

def images() -> list[np.ndarray]:
    a = skdata.astronaut()
    return [np.ascontiguousarray(c) for c in (a[100:164, 150:246], a[200:250, 20:120], a[0:100, 0:60])]


def same(got, want) -> None:  # noqa: ANN001
    assert [(e.data, e.setting, e.rate_met) for e in got] == [(e.data, e.setting, e.rate_met) for e in want]


# ------------------------------------------------------------------------------------------------ neural codecs


def compressai_model(arch, quality: int, seed: int, scale: float = 1.0) -> torch.nn.Module:  # noqa: ANN001
    """A random model; ``scale`` enlarges its latents (more bits), so qualities of distinct rates can be made."""
    torch.manual_seed(seed)
    model = arch(quality=quality, pretrained=False)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(scale)
        model.g_a[-1].bias.mul_(scale)
    model.update(force=True)
    return model.eval()


def hific_codec(batch_size: int | None = None) -> HiFiC:
    models = {}
    for seed, (regime, channels) in enumerate((("low", 4), ("med", 32))):  # more latents, more bits
        torch.manual_seed(seed)
        models[regime] = HiFiCModel(HiFiCConfig(hyper_channels=6, n_residual_blocks=2, base_filters=4,
                                                latent_channels=channels)).eval()
    return HiFiC.from_models(models, batch_size=batch_size)


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


def batch_images() -> list[np.ndarray]:
    """Padded sizes 64x128 (three images: one batch) and 128x64 (one)."""
    items = images()
    return items + [np.ascontiguousarray(items[0][::-1, ::-1])]


def counting(codec: Codec) -> list[int]:
    """Counts the codec's ``encode_batch`` calls (returned list: their batch sizes)."""
    calls: list[int] = []
    encode_batch = codec.encode_batch

    def counted(items, setting):  # noqa: ANN001, ANN202
        calls.append(len(items))
        return encode_batch(items, setting)

    codec.encode_batch = counted  # type: ignore[method-assign]
    return calls


def far_budgets(sizes: list[int]) -> list[int]:
    """Budgets between the rungs' sizes, none near a boundary, so a batch's last-bit roundings cannot move them."""
    assert all(b - a >= 64 for a, b in zip(sizes, sizes[1:], strict=False)), f"rungs too close for this test: {sizes}"
    return [sizes[0] // 2] + [(a + b) // 2 for a, b in zip(sizes, sizes[1:], strict=False)] + [sizes[-1] * 2]


def values(item) -> np.ndarray:  # noqa: ANN001
    return (item.samples if isinstance(item, Audio) else item).astype(float)


def check_batched_codec(single: Codec, batched: Codec, items: list, setting, levels: float) -> None:  # noqa: ANN001
    """Batched files decode alone, close to the single-item files; a batched decode is the per-item decode."""
    assert single.batch_size == 1 and not single.batched and batched.batched
    want = [single.encode(item, setting) for item in items]
    got = batched.encode_batch(items, setting)
    assert len(got) == len(items)
    for item, g, w in zip(items, got, want, strict=True):
        alone = single.decode(g, item)
        reference = single.decode(w, item)
        assert abs(len(g) - len(w)) <= max(4, len(w) // 50)
        assert np.abs(values(alone) - values(reference)).mean() <= levels
    for a, b in zip(batched.decode_batch(got, items), [single.decode(g, i) for g, i in zip(got, items, strict=True)],
                    strict=True):
        assert np.abs(values(a) - values(b)).max() <= (1e-5 if isinstance(a, Audio) else 1)


def check_lockstep_search(single: Codec, batched: Codec, items: list) -> None:
    """The batch's rate search answers what each item's own search does, with fewer encode calls."""
    budgets = [far_budgets([len(single.encode(item, s)) for s in single.ladder(item)]) for item in items]
    want = [single.encode_to_budgets(item, b) for item, b in zip(items, budgets, strict=True)]
    calls = counting(batched)
    got = batched.encode_to_budgets_batch(items, budgets)
    assert [[(e.setting, e.rate_met, e.trials) for e in row] for row in got] == \
        [[(e.setting, e.rate_met, e.trials) for e in row] for row in want]
    assert sum(calls) == sum(e.trials for row in got for e in row) and len(calls) < sum(calls)
    for row, b in zip(got, budgets, strict=True):
        assert all(len(e.data) <= budget for e, budget in zip(row, b, strict=True) if e.rate_met)


@pytest.mark.parametrize(("cls", "arch"), [(Mbt2018, mbt2018), (Cheng2020Anchor, cheng2020_anchor)])
def test_compressai_batches_and_budgets(cls, arch) -> None:  # noqa: ANN001
    models = {q: compressai_model(arch, q, q, scale=3.0 ** q) for q in (1, 2, 3)}
    single, batched = cls.from_model(models), cls.from_model(models, batch_size=3)
    items = batch_images()
    check_batched_codec(single, batched, items, 2, levels=1.0)
    check_lockstep_search(single, batched, items[:2])
    for item in items[:2]:
        sizes = [len(single.encode(item, q)) for q in (1, 2, 3)]
        budgets = [sizes[0] - 1, sizes[0], sizes[1], (sizes[1] + sizes[2]) // 2, sizes[2] + 10]
        shared = single.encode_to_budgets(item, budgets)
        same(shared, [single.encode_to_budget(item, b) for b in budgets])
        assert sum(e.trials for e in shared) <= 3  # each quality encoded at most once for all five budgets


def test_compressai_entropy_path_copy_codes_like_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the entropy path runs on a CPU copy of the model; that copy must code exactly as the model."""
    from mpq_assets.codecs import compressai_batch as cb

    model = compressai_model(mbt2018, 1, 0)
    monkeypatch.setattr(cb, "model_device", lambda m: torch.device("cuda") if m is model else torch.device("cpu"))
    clone = cb.entropy_model(model)
    assert clone is not model and clone is cb.entropy_model(model)  # made once
    assert clone.g_a is None and clone.g_s is None and clone.h_s is not model.h_s
    x = torch.from_numpy(np.ascontiguousarray(images()[0][:64, :64].transpose(2, 0, 1))).float()[None] / 255
    with torch.no_grad():
        y = model.g_a(x)
        ref = model.compress(x)
        out = cb._with_modules(clone, g_a=cb._Given(y)).compress(y)
        capture = cb._Capture()
        cb._with_modules(clone, g_s=capture).decompress(ref["strings"], ref["shape"])
        x_hat = model.decompress(ref["strings"], ref["shape"])["x_hat"]
    assert out["strings"] == ref["strings"] and tuple(out["shape"]) == tuple(ref["shape"])
    assert torch.equal(model.g_s(capture.value).clamp_(0, 1), x_hat)  # the copy decodes the latent the model does


def test_hific_batches_and_budgets() -> None:
    assert HIFIC_REGIMES == MODEL_REGIMES  # hific.py keeps its own copy so importing it does not import torch
    single, batched = hific_codec(), hific_codec(batch_size=3)
    items = batch_images()
    check_batched_codec(single, batched, items, "med", levels=1.0)
    check_lockstep_search(single, batched, items)
    for item in images():
        sizes = [len(single.encode(item, r)) for r in ("low", "med")]
        budgets = [sizes[0] - 1, sizes[0], sizes[1], sizes[1] * 2]
        shared = single.encode_to_budgets(item, budgets)
        same(shared, [single.encode_to_budget(item, b) for b in budgets])
        assert sum(e.trials for e in shared) <= 2


@pytest.mark.parametrize(("cls", "name", "sr"), [(Encodec24, "encodec-24khz", 24000),
                                                 (Encodec48, "encodec-48khz", 48000)])
def test_encodec_one_encoder_pass_for_all_budgets_and_batches(cls, name: str, sr: int) -> None:  # noqa: ANN001
    model = encodec_model(name, 0)
    single, batched = cls.from_model(model), cls.from_model(model, batch_size=4)
    items = clips(sr)
    items.append(Audio(np.roll(items[0].samples, 77, axis=1), sr))  # the first clip's length: one batch
    from encodec.compress import compress

    for item in items:
        ladder = single.ladder(item)
        wav = single._to_model(item, model)
        for bw in ladder:  # our ECDC writer is the package's, byte for byte
            model.set_target_bandwidth(bw)
            assert single.encode(item, bw) == compress(model, wav, use_lm=False)
        # the codes of a lower bandwidth are the first codebooks of a higher one: one pass gives every file
        exact = [single.expected_size(item, bw) for bw in ladder]
        shared = single.encode_to_budgets(item, exact + [1])
        assert [e.data for e in shared[:-1]] == [single.encode(item, bw) for bw in ladder]
        assert [e.setting for e in shared] == [single.label(bw) for bw in ladder] + [single.label(ladder[0])]
        assert [e.rate_met for e in shared] == [True] * len(ladder) + [False]
        assert sum(e.trials for e in shared) == 1
        budgets = [exact[1] + d for d in (-1, 0, 3)] + [10**9]
        same(single.encode_to_budgets(item, budgets), [single.encode_to_budget(item, b) for b in budgets])
    check_batched_codec(single, batched, items, single.ladder(items[0])[1], levels=0.05)
    budgets = [[single.expected_size(item, bw) + 5 for bw in single.ladder(item)] for item in items]
    got = batched.encode_to_budgets_batch(items, budgets)  # sizes depend on the duration only
    assert [[(e.setting, len(e.data)) for e in row] for row in got] == \
        [[(e.setting, len(e.data)) for e in row] for row in (single.encode_to_budgets(i, b)
                                                              for i, b in zip(items, budgets, strict=True))]


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
        jobs.append(EncodeJob(codec, f"i{k}", str(tmp_path / f"i{k}.png"), "image",
                              targets(raw_bytes(item), ratios,
                                      [tmp_path / "out" / f"{r:g}" / f"i{k}.bin" for r in ratios])))
    jobs.append(EncodeJob(codec, "missing", str(tmp_path / "missing.png"), "image",
                          targets(3000, (20.0,), [tmp_path / "m.bin"])))
    keep = ("bytes", "setting", "rate_met", "path", "decoded_path")
    batched = [failures(r) for r in run_batch(codec, jobs)]
    single = [failures(run_job(job)) for job in jobs]
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


def test_compressed_batches_a_neural_codec_into_files_that_decode_alone(tmp_path: Path) -> None:
    from mpq_assets.media.image import load_image, write_image_png

    single, batched = hific_codec(), hific_codec(batch_size=3)
    ratios = (20.0, 200.0, 1000.0)
    jobs = []
    for k, item in enumerate(batch_images()):
        write_image_png(tmp_path / f"i{k}.png", item)
        jobs.append(EncodeJob(batched, f"i{k}", str(tmp_path / f"i{k}.png"), "image",
                              targets(raw_bytes(item), ratios,
                                      [tmp_path / "out" / f"{r:g}" / f"i{k}.mpqc" for r in ratios])))
    calls, device_batches = counting(batched), []
    batched._coders["low"].model.Encoder.register_forward_hook(
        lambda module, inputs, output: device_batches.append(inputs[0].shape[0]))
    results = list(map_jobs(batched, jobs, workers=1))
    assert calls[0] == 4  # the rate search of all four images in lockstep ...
    assert device_batches[:2] == [3, 1]  # ... and the three of one padded size through the encoder together
    for job, rows in zip(jobs, results, strict=True):
        original = load_image(job.original_path)
        assert len(rows) == len(ratios)
        for row in rows:
            assert isinstance(row, dict), row
            data = Path(row["path"]).read_bytes()
            assert len(data) == row["bytes"] and row["rate_met"] == (row["bytes"] <= row["budget_bytes"])
            alone = single.decode(data, original)  # a batch-written file decodes alone ...
            stored = load_image(row["decoded_path"])  # ... to the batch-decoded reconstruction, within a level
            assert np.abs(alone.astype(int) - stored.astype(int)).max() <= 1


def test_compressed_keeps_an_item_the_codec_cannot_take_out_of_the_batch(tmp_path: Path) -> None:
    import soundfile as sf

    codec = Encodec48.from_model(encodec_model("encodec-48khz", 0), batch_size=4)
    rng = np.random.default_rng(3)
    jobs, shapes = [], {"a": 1, "b": 1, "surround": 6, "c": 1}
    for name, channels in shapes.items():
        path = tmp_path / f"{name}.flac"
        sf.write(path, (0.2 * rng.standard_normal((48_000, channels))).astype(np.float32), 48_000, subtype="PCM_16")
        paths = [tmp_path / "out" / f"{r:g}" / f"{name}.ecdc" for r in (50.0, 200.0)]
        jobs.append(EncodeJob(codec, name, str(path), "audio", targets(48_000 * channels * 2, (50.0, 200.0), paths)))
    device_batches: list[int] = []
    codec.model().encoder.register_forward_hook(
        lambda module, inputs, output: device_batches.append(inputs[0].shape[0]))
    results = dict(zip(shapes, map_jobs(codec, jobs, workers=1), strict=True))
    assert all(isinstance(r, Failed) and "1 or 2 channels" in r.error for r in results["surround"])
    assert all(isinstance(r, dict) for name in ("a", "b", "c") for r in results[name])
    assert max(device_batches) == 3  # the three good clips' 1 s segments went through the encoder together


def test_the_deployment_device_and_batch_reach_the_codecs_that_take_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpq_assets.codecs.image_pillow import Jpeg
    from mpq_assets.defs.resources import MpqResource
    from mpq_assets.experiments import EXPERIMENTS
    from mpq_assets.pipeline import compress

    assert get_codec("mbt2018", device="cpu")._device == "cpu"
    assert get_codec("hific", device="cpu")._device == "cpu"
    assert get_codec("encodec-48khz", device="cpu")._device_name == "cpu"
    assert get_codec("hific", device="cpu", batch_size=3).batch_size == 3
    assert type(get_codec("jpeg", device="cuda", batch_size=3)) is Jpeg  # a codec without a model takes neither
    asked: list[tuple] = []
    monkeypatch.setattr(compress, "get_codec",
                        lambda name, device=None, batch_size=None, settings=None: asked.append((device, batch_size))
                        or Jpeg())
    settings = MpqResource(device="cpu", codec_batch=5).settings()
    compress.ready_codec(EXPERIMENTS["demo_images"], "jpeg", settings)
    assert asked == [("cpu", 5)]  # MpqResource(device=..., codec_batch=...) decides, not only the environment
