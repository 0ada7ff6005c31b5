"""HiFiC: the published checkpoint layout, real bitstreams from random-weight models, rate control, safe conversion.

No HiFiC weights ship offline (docs/offline.md), so the full architecture is exercised
with random weights, and small instances of the same architecture keep the
suite fast. Random weights are for tests only.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from mpq_assets.codecs.base import CodecError, Encoded
from mpq_assets.codecs.container import Container, pack, unpack
from mpq_assets.codecs.hific import HiFiC, HiFiCLo, to_uint8
from mpq_assets.codecs.hific_model import (
    HiFiCConfig,
    HiFiCModel,
    check_state_dict,
    convert_hific_checkpoint,
    converted_path,
    latent_parameters,
    load_hific_model,
    pad_to_stride,
)
from mpq_assets.weights import ModelNotAvailableError

pytestmark = pytest.mark.fast  # the `make check` tier

TINY = dict(hyper_channels=6, n_residual_blocks=2, base_filters=4)


def tiny(seed: int, latent_channels: int = 8, **overrides) -> HiFiCModel:
    torch.manual_seed(seed)
    return HiFiCModel(HiFiCConfig(latent_channels=latent_channels, **{**TINY, **overrides})).eval()


def photo(h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[40:40 + h, 180:180 + w])


def reference(model: HiFiCModel, image: np.ndarray) -> np.ndarray:
    """The model's deterministic reconstruction path (quantised latents through the generator), no bitstream."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    return to_uint8(model.reconstruct(x)[0])


# --- the published layout ----------------------------------------------------------------------------------------

# shapes read off the public implementation (Encoder, Generator, Hyperprior modules of src/model.py)
PUBLISHED_SHAPES = {
    "Encoder.conv_block1.1.weight": (60, 3, 7, 7),
    "Encoder.conv_block1.2.gamma": (1, 60, 1, 1),
    "Encoder.conv_block2.1.weight": (120, 60, 3, 3),
    "Encoder.conv_block5.1.weight": (960, 480, 3, 3),
    "Encoder.conv_block5.2.beta": (1, 960, 1, 1),
    "Encoder.conv_block_out.1.weight": (220, 960, 3, 3),
    "Encoder.conv_block_out.1.bias": (220,),
    "Generator.conv_block_init.0.gamma": (1, 220, 1, 1),
    "Generator.conv_block_init.2.weight": (960, 220, 3, 3),
    "Generator.conv_block_init.3.beta": (1, 960, 1, 1),
    "Generator.resblock_0.conv1.weight": (960, 960, 3, 3),
    "Generator.resblock_8.conv2.weight": (960, 960, 3, 3),
    "Generator.resblock_8.norm2.gamma": (1, 960, 1, 1),
    "Generator.upconv_block1.0.weight": (960, 480, 3, 3),
    "Generator.upconv_block1.1.gamma": (1, 480, 1, 1),
    "Generator.upconv_block4.0.weight": (120, 60, 3, 3),
    "Generator.conv_block_out.1.weight": (3, 60, 7, 7),
    "Hyperprior.analysis_net.conv1.weight": (320, 220, 3, 3),
    "Hyperprior.analysis_net.conv2.weight": (320, 320, 5, 5),
    "Hyperprior.analysis_net.conv3.bias": (320,),
    "Hyperprior.synthesis_mu.conv1.weight": (320, 320, 5, 5),
    "Hyperprior.synthesis_mu.conv3.weight": (320, 220, 3, 3),
    "Hyperprior.synthesis_std.conv3.bias": (220,),
    "Hyperprior.hyperlatent_likelihood.H_0": (320, 3, 1),
    "Hyperprior.hyperlatent_likelihood.H_1": (320, 3, 3),
    "Hyperprior.hyperlatent_likelihood.H_3": (320, 1, 3),
    "Hyperprior.hyperlatent_likelihood.a_3": (320, 1, 1),
    "Hyperprior.hyperlatent_likelihood.b_0": (320, 3, 1),
}


def test_published_architecture_parameter_and_activation_shapes():
    with torch.device("meta"):  # the full 181 M-parameter model, without allocating it
        model = HiFiCModel()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        for key, shape in PUBLISHED_SHAPES.items():
            assert shapes[key] == shape, key
        assert {k.split(".")[0] for k in shapes} == {"Encoder", "Generator", "Hyperprior"}
        assert sorted({k.split(".")[1] for k in shapes if ".resblock_" in k}) == [f"resblock_{i}" for i in range(9)]
        assert len([k for k in shapes if k.startswith("Hyperprior.hyperlatent_likelihood.")]) == 12
        assert not any("running" in k or k.endswith(".weight") and ".norm" in k for k in shapes)  # ChannelNorm2D

        x = torch.empty(1, 3, 256, 256)
        y, z = model.analysis(x)
        means, scales = latent_parameters(model.Hyperprior.synthesis_mu, model.Hyperprior.synthesis_std, z)
        assert tuple(y.shape) == (1, 220, 16, 16)
        assert tuple(z.shape) == (1, 320, 4, 4)
        assert tuple(means.shape) == tuple(scales.shape) == (1, 220, 16, 16)
        assert tuple(model.synthesis(y).shape) == (1, 3, 256, 256)
    assert tuple(pad_to_stride(torch.zeros(1, 3, 256, 200)).shape) == (1, 3, 256, 256)
    assert tuple(pad_to_stride(torch.zeros(1, 3, 1, 65)).shape) == (1, 3, 128, 128)  # hyper-analysis needs >= 8x8 y


def test_state_dict_loads_strictly_and_mismatches_fail_loudly(tmp_path: Path):
    source = tiny(0)
    path = tmp_path / "sd.pt"
    torch.save(source.state_dict(), path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    target = tiny(1)
    target.load_state_dict(state, strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    check_state_dict(state, source.config)

    renamed = dict(state)
    renamed["Generator.resblock_0.conv1.kernel"] = renamed.pop("Generator.resblock_0.conv1.weight")
    with pytest.raises(RuntimeError, match="resblock_0.conv1"):
        tiny(1).load_state_dict(renamed, strict=True)
    with pytest.raises(ValueError, match=r"missing \['Generator.resblock_0.conv1.weight'\].*unexpected"):
        check_state_dict(renamed, source.config)

    reshaped = dict(state)
    reshaped["Encoder.conv_block_out.1.weight"] = torch.zeros(9, 64, 3, 3)
    with pytest.raises(RuntimeError, match="size mismatch"):
        tiny(1).load_state_dict(reshaped, strict=True)
    with pytest.raises(ValueError, match="Encoder.conv_block_out.1.weight"):
        check_state_dict(reshaped, source.config)


# --- real bitstreams ---------------------------------------------------------------------------------------------


def test_full_architecture_round_trips_a_real_bitstream():
    torch.manual_seed(0)
    model = HiFiCModel().eval()  # published sizes, random weights
    codec = HiFiC.from_models({"low": model})
    image = photo(64, 64)

    data = codec.encode(image, "low")
    box = unpack(data)
    assert (box.codec, box.setting, box.device_type, box.height, box.width) == ("hific", "low", "cpu", 64, 64)
    assert box.shapes == ((320, 2, 2), (220, 8, 8))  # padded to 128x128, the smallest size the hyperprior codes
    assert pack(box) == data  # nothing in the file but the fields: the byte count is the container's
    assert data[:5] == b"MPQC\x02" and data.endswith(box.strings[1]) and all(len(s) > 0 for s in box.strings)
    # header overhead, counted in the rate: magic, version, "hific", "low", "cpu", H, W, 2 shapes (320 and 220
    # take 2 varint bytes), 2 strings and their lengths
    lengths = sum(max(1, -(-len(s).bit_length() // 7)) for s in box.strings)
    assert len(data) - sum(len(s) for s in box.strings) == 4 + 1 + 6 + 4 + 4 + 1 + 1 + 1 + 5 + 5 + 1 + lengths < 40

    decoded = codec.decode(data, image)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - reference(model, image).astype(int)).max() <= 1


@pytest.mark.parametrize("shape", [(1, 1), (37, 130), (65, 64)])
def test_odd_sizes_pad_and_crop(shape: tuple[int, int]):
    model = tiny(2)
    codec = HiFiC.from_models({"med": model})
    image = photo(*shape)
    encoded = codec.encode_to_budget(image, 10**9)
    assert encoded.setting == "regime=med" and encoded.rate_met
    decoded = codec.decode(encoded.data, image)
    assert decoded.shape == image.shape
    assert np.array_equal(decoded, reference(model, image))


def test_rate_control_picks_the_highest_regime_that_fits_and_is_monotone():
    models = {"low": tiny(3, latent_channels=2), "med": tiny(4, latent_channels=8), "high": tiny(5, latent_channels=32)}
    codec = HiFiC.from_models(models)
    assert codec.ladder(photo(8, 8)) == ["low", "med", "high"]
    image = photo(96, 80)
    sizes = {r: len(codec.encode(image, r)) for r in ("low", "med", "high")}
    assert sizes["low"] < sizes["med"] < sizes["high"]

    budgets = sorted({sizes["low"] - 1, *sizes.values(), sizes["med"] + 1, sizes["high"] + 1000})
    chosen: list[int] = []
    for budget in budgets:
        result = codec.encode_to_budget(image, budget)
        assert isinstance(result, Encoded)
        fitting = [r for r in ("low", "med", "high") if sizes[r] <= budget]
        if fitting:
            assert result.rate_met and result.setting == f"regime={fitting[-1]}"
            assert len(result.data) == sizes[fitting[-1]] <= budget
        else:  # below the lowest rung: recorded, not raised
            assert not result.rate_met and result.setting == "regime=low"
        chosen.append(("low", "med", "high").index(result.setting.split("=")[1]))
    assert chosen == sorted(chosen)


# --- weights -----------------------------------------------------------------------------------------------------


def test_missing_weights_are_reported_and_encode_refuses(mpq_home: Path):
    codec = HiFiC()
    message = codec.weights_missing()
    hific_dir = mpq_home / "models" / "hific"
    assert message and str(hific_dir / "hific_low.pt") in message and str(hific_dir / "hific_hi.pt") in message
    assert "cannot download" in message and "zenodo" in message.lower()
    with pytest.raises(ModelNotAvailableError, match="hific_low.pt"):
        codec.encode(photo(16, 16), "low")
    with pytest.raises(ModelNotAvailableError):
        codec.encode_to_budget(photo(16, 16), 1000)
    assert str(hific_dir / "hific_med.pt") not in (HiFiCLo().weights_missing() or "")


class _TrainingArgs:
    """Stands in for the training script's argument object pickled into the public checkpoints."""

    def __init__(self, **values):
        self.__dict__.update(values)


CALLS: list[str] = []


def _record_call(arg: str) -> dict:
    CALLS.append(arg)
    return {}


class _Payload:
    """A pickle that calls a function on load, the way a malicious checkpoint runs code."""

    def __reduce__(self):
        return (_record_call, ("called during unpickling",))


def _public_layout(model: HiFiCModel, args) -> dict:
    state = dict(model.state_dict())
    state["Discriminator.conv1.weight"] = torch.zeros(4, 3, 3, 3)  # training-only parts are dropped
    return {"model_state_dict": state, "compression_optimizer_state_dict": {"state": {}, "param_groups": []},
            "epoch": 7, "steps": 200000, "args": args}


def test_conversion_writes_safetensors_once_and_the_codec_runs_on_it(mpq_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MPQ_DEVICE", "cpu")  # compared bit for bit with the CPU reference below
    model = tiny(6, normalize_input_image=True, likelihood_type="logistic")
    source = mpq_home / "models" / "hific" / "hific_low.pt"
    source.parent.mkdir(parents=True)
    args = _TrainingArgs(normalize_input_image=True, likelihood_type="logistic", regime="low", n_residual_blocks=2,
                         sample_noise=False, use_channel_norm=True, lambda_schedule={"vals": [2.0, 1.0]})
    torch.save(_public_layout(model, args), source)
    with pytest.raises(pickle.UnpicklingError):  # the object in `args` is why a one-time conversion exists
        torch.load(source, map_location="cpu", weights_only=True)
    assert HiFiCLo().weights_missing() is None  # a checkpoint in place is enough

    target = convert_hific_checkpoint(source, converted_path("low"), regime="low")
    assert target == mpq_home / "models" / "hific" / "low.safetensors"
    loaded = load_hific_model(target)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    stamp = target.stat().st_mtime_ns
    source.unlink()
    assert convert_hific_checkpoint(source, target) == target and target.stat().st_mtime_ns == stamp  # once
    with pytest.raises(ValueError, match="safetensors only"):
        load_hific_model(source)

    codec = HiFiCLo()  # the default constructor: converted real-layout weights, never random ones
    image = photo(40, 70)
    encoded = codec.encode_to_budget(image, 10**9)
    assert encoded.setting == "regime=low"
    assert np.array_equal(codec.decode(encoded.data, image), reference(model, image))


def test_conversion_reads_plain_dict_args_with_weights_only(tmp_path: Path):
    model = tiny(7)
    source = tmp_path / "hific_med.pt"
    torch.save(_public_layout(model, {"normalize_input_image": False, "likelihood_type": "gaussian"}), source)
    target = convert_hific_checkpoint(source, tmp_path / "med.safetensors")
    from safetensors import safe_open

    with safe_open(str(target), framework="pt") as fh:
        metadata = fh.metadata()
    assert metadata["reader"] == "torch.load(weights_only=True)" and metadata["dropped_keys"] == "1"
    assert load_hific_model(target).config == model.config


def test_conversion_refuses_arbitrary_globals(tmp_path: Path):
    source = tmp_path / "hific_low.pt"
    torch.save(_public_layout(tiny(8), _Payload()), source)
    target = tmp_path / "low.safetensors"
    with pytest.raises(pickle.UnpicklingError, match="refusing to call .*_record_call"):
        convert_hific_checkpoint(source, target)
    assert CALLS == [] and not target.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_conversion_refuses_checkpoints_it_cannot_run_faithfully(tmp_path: Path):
    source = tmp_path / "hific_med.pt"
    torch.save(_public_layout(tiny(9), {"normalize_input_image": False}), source)
    with pytest.raises(ValueError, match="likelihood_type"):
        convert_hific_checkpoint(source, tmp_path / "a.safetensors")
    torch.save(_public_layout(tiny(9), {"normalize_input_image": False, "likelihood_type": "gaussian",
                                        "regime": "low"}), source)
    with pytest.raises(ValueError, match="regime 'low' but is being installed as 'med'"):
        convert_hific_checkpoint(source, tmp_path / "b.safetensors", regime="med")
    assert not list(tmp_path.glob("*.safetensors"))


def test_damaged_containers_fail_with_codec_errors():
    codec = HiFiC.from_models({"low": tiny(10)})
    image = photo(20, 30)
    data = codec.encode(image, "low")
    box = unpack(data)
    for bad, why in [(data[:-3], "truncated"), (data + b"\x00", "1 unexpected bytes"), (b"JUNK" + data[4:], "magic"),
                     (data.replace(b"hific", b"other", 1), "written by codec 'other'"),
                     (pack(Container("mbt2018", "1", 20, 30, box.shapes, box.strings)), "written by codec 'mbt2018'"),
                     (pack(Container("hific", "med", 20, 30, box.shapes, box.strings)), "regime 'med', unknown"),
                     (pack(Container("hific", "low", 20, 30, box.shapes, box.strings, "cuda")),
                      "entropy-coded on 'cuda'"),
                     (pack(Container("hific", "low", 200, 30, box.shapes, box.strings)), "do not fit a 200x30"),
                     (pack(Container("hific", "low", 20, 30, box.shapes[:1], box.strings)), "2 tensors")]:
        with pytest.raises(CodecError, match=why):
            codec.decode(bad, image)
    with pytest.raises(CodecError, match="RGB uint8"):
        codec.encode(image.astype(np.float32), "low")
    with pytest.raises(CodecError, match="unknown regime"):
        codec.encode(image, "high")


def test_hific_lo_is_registered_with_the_low_regime_only() -> None:
    from mpq_assets.codecs import codec_names, get_codec

    assert {"hific", "hific-lo"} <= set(codec_names("image"))
    codec = get_codec("hific-lo")
    assert isinstance(codec, HiFiCLo) and codec.ladder(np.zeros((8, 8, 3), np.uint8)) == ["low"]
