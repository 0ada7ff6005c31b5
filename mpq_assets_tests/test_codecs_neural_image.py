"""CompressAI codecs (mbt2018, cheng2020-anchor) on randomly initialised models of the real architectures.

No pretrained weights ship on PyPI (docs/offline.md), so the coding path is tested with
random weights injected through ``from_model``; the weight-loading path is tested
with checkpoints we write, and the default constructor's refusal without weights.
The models run with one CPU thread: their autoregressive loop is thousands of tiny
convolutions, which OpenMP threads only slow down on a shared 2-core machine.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from compressai.zoo import cheng2020_anchor, mbt2018

from mpq_assets.codecs.base import CodecError
from mpq_assets.codecs.container import Container, pack, unpack
from mpq_assets.codecs.neural_image import Cheng2020Anchor, Mbt2018, checkpoint_filename, load_checkpoint
from mpq_assets.weights import ModelNotAvailableError

ZOO = {"mbt2018": (Mbt2018, mbt2018), "cheng2020-anchor": (Cheng2020Anchor, cheng2020_anchor)}
CASES = [("mbt2018", 1), ("mbt2018", 5), ("cheng2020-anchor", 1), ("cheng2020-anchor", 4)]
# decode vs the model's own forward x_hat, in 8-bit levels: forward() rounds the latent y itself while
# compress() rounds y - mean and adds the mean back (and floats differ), so a few levels apart at most.
FORWARD_MAX_LEVELS, FORWARD_MEAN_LEVELS = 8, 1.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:164, 150:246])  # 64x96, padded to 64x128


def random_model(name: str, quality: int, seed: int = 0, scale: float = 1.0):
    torch.manual_seed(seed)
    model = ZOO[name][1](quality=quality, pretrained=False)
    if scale != 1.0:  # larger latents -> more bits: random models of distinct rates for rate control
        with torch.no_grad():
            model.g_a[-1].weight.mul_(scale)
            model.g_a[-1].bias.mul_(scale)
    model.update(force=True)
    return model.eval()


def to_uint8(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    return (x_hat[0, :, :h, :w].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def varint_size(n: int) -> int:
    return max(1, -(-n.bit_length() // 7))


def padded_tensor(item: np.ndarray) -> torch.Tensor:
    h, w = item.shape[:2]
    p = np.pad(item, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")
    return torch.from_numpy(p).float().permute(2, 0, 1).unsqueeze(0) / 255


@pytest.mark.parametrize(("name", "quality"), CASES)
def test_round_trip_equals_the_model(name: str, quality: int, image: np.ndarray, tmp_path) -> None:
    model = random_model(name, quality)
    codec = ZOO[name][0].from_model(model, quality=quality)
    data = codec.encode(image, quality)
    out = codec.decode(data, like=image)
    assert out.shape == image.shape and out.dtype == np.uint8
    x = padded_tensor(image)
    with torch.no_grad():
        ref = model.compress(x)
        exact = to_uint8(model.decompress(ref["strings"], ref["shape"])["x_hat"], 64, 96)
        forward = to_uint8(model(x)["x_hat"], 64, 96)
    np.testing.assert_array_equal(out, exact)  # our container + padding + crop add nothing to CompressAI's coding
    diff = np.abs(out.astype(int) - forward.astype(int))
    assert diff.max() <= FORWARD_MAX_LEVELS and diff.mean() <= FORWARD_MEAN_LEVELS
    # the rate is the whole file: header plus the entropy-coded strings CompressAI produced
    c = unpack(data)
    assert c.strings == (ref["strings"][0][0], ref["strings"][1][0])
    assert data[:5] == b"MPQC\x02" and data.endswith(c.strings[1])
    # magic, version, 3 length-prefixed names, H=64, W=96, 1 shape (ndim 2, dims 1 and 2), 2 strings' lengths
    header = 4 + 1 + (1 + len(name)) + (1 + len(str(quality))) + (1 + len("cpu")) + 1 + 1 + 1 + 3 + 1
    assert len(data) == header + sum(varint_size(len(s)) + len(s) for s in c.strings)
    assert (c.codec, c.setting, c.device_type, c.height, c.width, c.shapes) == (name, str(quality), "cpu", 64, 96,
                                                                                ((1, 2),))
    enc = codec.encode_to_budget(image, len(data))
    assert enc.rate_met and len(enc.data) <= len(data)
    path = tmp_path / f"x{codec.extension}"
    path.write_bytes(data)
    np.testing.assert_array_equal(codec.decode(path.read_bytes(), like=None), out)


@pytest.mark.parametrize("size", [(37, 53), (1, 1), (65, 2)])
def test_odd_sizes_pad_and_crop(size: tuple[int, int], image: np.ndarray) -> None:
    model = random_model("cheng2020-anchor", 1)
    codec = Cheng2020Anchor.from_model(model, quality=1)
    h, w = size
    item = np.ascontiguousarray(np.tile(image, (2, 1, 1))[:h, :w])
    out = codec.decode(codec.encode(item, 1), like=item)
    assert out.shape == item.shape and out.dtype == np.uint8
    with torch.no_grad():
        ref = model.compress(padded_tensor(item))
        exact = to_uint8(model.decompress(ref["strings"], ref["shape"])["x_hat"], h, w)
    np.testing.assert_array_equal(out, exact)


def test_bad_items_are_codec_errors(image: np.ndarray) -> None:
    codec = Cheng2020Anchor.from_model(random_model("cheng2020-anchor", 1), quality=1)
    for bad in (image[..., 0], image.astype(np.float32), image[:0], image[..., :2]):
        with pytest.raises(CodecError, match="RGB uint8|empty"):
            codec.encode(bad, 1)
    with pytest.raises(CodecError, match="no quality 2"):
        codec.encode(image, 2)


def test_rate_control_picks_highest_quality_that_fits(image: np.ndarray) -> None:
    item = np.ascontiguousarray(image[:, :64])
    models = {q: random_model("cheng2020-anchor", q, seed=q, scale=s) for q, s in [(1, 1.0), (2, 4.0), (3, 16.0)]}
    codec = Cheng2020Anchor.from_model(models)
    assert codec.ladder(item) == [1, 2, 3]
    sizes = {q: len(codec.encode(item, q)) for q in (1, 2, 3)}
    assert sizes[1] < sizes[2] < sizes[3]
    budgets = sorted({1, sizes[1] - 1, *sizes.values(), sizes[2] + 1, sizes[3] - 1, 10 * sizes[3]})
    chosen = []
    for budget in budgets:
        enc = codec.encode_to_budget(item, budget)
        fits = [q for q, n in sizes.items() if n <= budget]
        expected = max(fits) if fits else 1
        assert enc.setting == f"q={expected}" and enc.rate_met == bool(fits), budget
        assert enc.data == codec.encode(item, expected)
        if fits:
            assert len(enc.data) <= budget
        chosen.append(expected)
    assert chosen == sorted(chosen) and chosen[0] == 1 and chosen[-1] == 3


@pytest.mark.parametrize("cls", [Mbt2018, Cheng2020Anchor])
def test_no_weights_no_random_fallback(cls, image: np.ndarray, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MPQ_COMPRESSAI_WEIGHTS", raising=False)
    monkeypatch.setenv("MPQ_OFFLINE", "1")
    codec = cls(device="cpu")
    msg = codec.weights_missing()
    expected = tmp_path / "torch" / "hub" / "checkpoints" / checkpoint_filename(cls.name, 1)
    assert msg and f"mpq models pull {cls.name}" in msg and str(expected) in msg
    with pytest.raises(ModelNotAvailableError, match=f"mpq models pull {cls.name}"):
        codec.encode(image, codec.ladder(image)[-1])
    with pytest.raises(ModelNotAvailableError, match="MPQ_OFFLINE"):
        codec.encode_to_budget(image, 10_000)
    # a local folder (constructor or MPQ_COMPRESSAI_WEIGHTS) is named in the message; all files present -> ready
    local = tmp_path / "local"
    local.mkdir()
    monkeypatch.setenv("MPQ_COMPRESSAI_WEIGHTS", str(local))
    assert str(local / checkpoint_filename(cls.name, 1)) in cls().weights_missing()
    for q in codec.ladder(image):
        (local / checkpoint_filename(cls.name, q)).touch()
    assert cls().weights_missing() is None


def test_checkpoints_load_safely(image: np.ndarray, tmp_path) -> None:
    model = random_model("cheng2020-anchor", 1)
    path = tmp_path / "cheng-q1.pth.tar"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = load_checkpoint("cheng2020-anchor", 1, path)  # weights_only=True, the stored CDF tables kept
    codec, ref = Cheng2020Anchor.from_model(loaded, quality=1), Cheng2020Anchor.from_model(model, quality=1)
    data = ref.encode(image, 1)
    assert codec.encode(image, 1) == data
    np.testing.assert_array_equal(codec.decode(data, like=image), ref.decode(data, like=image))
    # a pickle that needs more than tensors is refused, not executed
    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": model.state_dict(), "extra": Container("x", "1", 1, 1, (), ())}, evil)
    with pytest.raises(ModelNotAvailableError, match="weights_only"):
        load_checkpoint("cheng2020-anchor", 1, evil)
    # a file whose content does not match the SHA-256 prefix in its zoo name is refused
    fake = tmp_path / checkpoint_filename("cheng2020-anchor", 1)
    fake.write_bytes(path.read_bytes())
    with pytest.raises(ModelNotAvailableError, match="SHA-256"):
        load_checkpoint("cheng2020-anchor", 1, fake)


def test_corrupt_or_foreign_containers(image: np.ndarray) -> None:
    codec = Cheng2020Anchor.from_model(random_model("cheng2020-anchor", 1), quality=1)
    data = codec.encode(image, 1)
    c = unpack(data)
    assert pack(c) == data
    bad = {
        "magic": b"XXXX" + data[4:],
        "version 9": data[:4] + b"\x09" + data[5:],
        "truncated": data[:-3],
        "unexpected bytes": data + b"\x00",
        "written by 'mbt2018'": pack(Container("mbt2018", "1", 64, 96, c.shapes, c.strings)),
        "written by 'hific'": pack(Container("hific", "low", 64, 96, c.shapes, c.strings)),
        "quality 7": pack(Container(c.codec, "7", 64, 96, c.shapes, c.strings)),
        "quality 'q1' is not an integer": pack(Container(c.codec, "q1", 64, 96, c.shapes, c.strings)),
        "quality '' is not an integer": pack(Container(c.codec, "", 64, 96, c.shapes, c.strings)),
        "latent shapes ((9, 9),)": pack(Container(c.codec, "1", 64, 96, ((9, 9),), c.strings)),
        "latent shapes ((1, 2), (1, 2))": pack(Container(c.codec, "1", 64, 96, c.shapes * 2, c.strings)),
        "1 strings": pack(Container(c.codec, "1", 64, 96, c.shapes, c.strings[:1])),
        "image size 0x96": pack(Container(c.codec, "1", 0, 96, c.shapes, c.strings)),
        "1x96 image": pack(Container(c.codec, "1", 1, 96, c.shapes, c.strings)),
    }
    for what, blob in bad.items():
        with pytest.raises(CodecError, match=re.escape(what) if what != "1x96 image" else "original is 64x96"):
            codec.decode(blob, like=image)
    # another device type: refused by default, decoded with a warning when asked
    on_cuda = pack(Container(c.codec, "1", 64, 96, c.shapes, c.strings, "cuda"))
    with pytest.raises(CodecError, match="entropy-coded on 'cuda'.*Re-encode"):
        codec.decode(on_cuda, like=image)
    codec.on_device_mismatch = "warn"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = codec.decode(on_cuda, like=image)
    assert any("entropy-coded on 'cuda'" in str(w.message) for w in caught)
    np.testing.assert_array_equal(out, codec.decode(data, like=image))


def test_classes_declare_what_the_registry_needs() -> None:
    for cls in (Mbt2018, Cheng2020Anchor):
        cls.validate()
        assert cls.available() and cls.extension == ".mpqc" and cls.modality == "image"
    assert Mbt2018(device="cpu").ladder(np.zeros((1, 1, 3), np.uint8)) == list(range(1, 9))
    assert Cheng2020Anchor(device="cpu").ladder(np.zeros((1, 1, 3), np.uint8)) == list(range(1, 7))
    with pytest.raises(TypeError, match="wraps"):
        Mbt2018.from_model(object(), quality=1)
