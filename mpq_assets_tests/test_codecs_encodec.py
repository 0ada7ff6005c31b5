"""EnCodec 24/48 kHz as MPQ codecs: real ECDC bitstreams from randomly initialised models (no mocks).

No EnCodec weights are reachable offline (docs/offline.md), so the models are built as
the package builds them with ``pretrained=False``. Their RVQ codebooks start all
zero (encodec initialises them by k-means during training), which would code
every frame as index 0; the tests fill them with seeded random vectors so the
bitstreams carry varied codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from mpq_assets.codecs import neural_audio
from mpq_assets.codecs.base import CodecError
from mpq_assets.codecs.neural_audio import (
    Encodec24,
    Encodec24Lm,
    Encodec48,
    Encodec48Lm,
    _Encodec,
    _load_state,
    build_lm,
    build_model,
    checkpoint_dir,
    checkpoint_paths,
)
from mpq_assets.codecs.rate_control import RATIOS, budget_bytes, parse_ratio
from mpq_assets.media.audio import Audio
from mpq_assets.settings import load_settings
from mpq_assets.weights import MODEL_CACHE, ModelNotAvailableError

HEADER_MAX = 9 + 64 + 1  # "ECDC" + version + uint32 size; the JSON header (< 64 bytes here); 1 padding byte


# codebook spread near the random encoders' output scale (~0.03 for 24 kHz; ~1 after the 48 kHz group norm)
CODEBOOK_STD = {"encodec-24khz": 0.02, "encodec-48khz": 0.5}


def random_model(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name)
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_(0.0, CODEBOOK_STD[name])
    return model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codecs() -> dict[str, _Encodec]:
    return {"encodec-24khz": Encodec24.from_model(random_model("encodec-24khz", 0)),
            "encodec-48khz": Encodec48.from_model(random_model("encodec-48khz", 1))}


def clip(sr: int, seconds: float, channels: int = 1) -> Audio:
    """Speech-like: a vibrato harmonic series under a syllable-rate envelope plus a little noise."""
    rng = np.random.default_rng(sr + channels)
    t = np.arange(int(round(seconds * sr))) / sr
    out = []
    for ch in range(channels):
        f0 = (120.0 + 40.0 * ch) * (1.0 + 0.08 * np.sin(2 * np.pi * 0.6 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        harmonics = sum(np.sin(k * phase) / k for k in range(1, 12) if k * 200 < sr / 2)
        env = (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t - np.pi / 2)) ** 2
        out.append(0.25 * harmonics * env + 0.01 * rng.standard_normal(t.size))
    return Audio(np.asarray(out, dtype=np.float32), sr)


SPEECH48 = clip(48_000, 2.0)  # the 48 kHz mono 2 s clip (Common Voice's rate, the paper's speech)


@pytest.fixture(scope="module")
def speech_streams(codecs) -> dict[str, dict[float, bytes]]:
    """Every bandwidth of both codecs on the 2 s clip, encoded once for the tests below."""
    return {name: {bw: c.encode(SPEECH48, bw) for bw in c.ladder(SPEECH48)} for name, c in codecs.items()}


def header(data: bytes) -> dict:
    magic, version, size = struct.unpack("!4sBI", data[:9])
    assert (magic, version) == (b"ECDC", 0)
    return json.loads(data[9:9 + size])


@pytest.mark.parametrize("name", ["encodec-24khz", "encodec-48khz"])
def test_each_bandwidth_round_trips_with_its_nominal_size(codecs, speech_streams, name):
    codec, streams = codecs[name], speech_streams[name]
    assert list(streams) == sorted(streams)
    sizes = []
    for bw, data in streams.items():
        meta = header(data)
        assert meta == {"m": name.replace("-", "_"), "al": codec.model().sample_rate * 2,
                        "nc": int(bw / (0.75 if name == "encodec-24khz" else 1.5)), "lm": False}
        assert len(data) == codec.expected_size(SPEECH48, bw)
        # bandwidth x duration / 8 is the packed codes; the container adds its header and, for the 48 kHz
        # model, per 1 s segment a float32 scale and a padding byte, plus the 1 % segment overlap
        # (2 s = segments of 1 s, 1 s, 20 ms: 303 steps of 150/s coded instead of 300)
        nominal = bw * 1000 * SPEECH48.duration_s / 8
        overhead = len(data) - nominal
        if name == "encodec-24khz":
            assert 9 + 40 < overhead <= HEADER_MAX
        else:
            assert 0.01 * nominal + 9 + 40 + 3 * 4 < overhead <= 0.01 * nominal + HEADER_MAX + 3 * (4 + 1)
        sizes.append(len(data))
        out = codec.decode(data, SPEECH48)
        assert (out.samples.shape, out.sample_rate, out.samples.dtype) == ((1, 96_000), 48_000, np.float32)
        assert np.isfinite(out.samples).all() and np.abs(out.samples).max() <= 1.0
        assert np.abs(out.samples).max() > 1e-4
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    # lowest and highest rung, in kbps (model frames 75 or 150 per second, 10 bits per code)
    kbps = [8 * s / SPEECH48.duration_s / 1000 for s in (sizes[0], sizes[-1])]
    lowest, overlap = codec.ladder(SPEECH48)[0], (1.0 if name == "encodec-24khz" else 1.01)
    assert lowest * overlap < kbps[0] < lowest * overlap + 0.4  # the header is ~0.27 kbps over 2 s
    assert 24.0 * overlap < kbps[1] < 24.0 * overlap + 0.4


@pytest.mark.parametrize("item", [clip(44_100, 0.4, channels=2), clip(16_000, 0.4)], ids=["44k1-stereo", "16k-mono"])
@pytest.mark.parametrize("name", ["encodec-24khz", "encodec-48khz"])
def test_decode_returns_the_items_own_format(codecs, name, item):
    codec = codecs[name]
    previous = 0
    for bw in codec.ladder(item):
        data = codec.encode(item, bw)
        assert len(data) == codec.expected_size(item, bw) > previous
        previous = len(data)
        out = codec.decode(data, item)
        assert (out.samples.shape, out.sample_rate) == (item.samples.shape, item.sample_rate)
        assert np.isfinite(out.samples).all()
        if name == "encodec-24khz" and item.channels == 2:  # mono model: the decode is duplicated
            assert np.array_equal(out.samples[0], out.samples[1])


def test_file_on_disk_decodes_identically(codecs, speech_streams, tmp_path):
    codec = codecs["encodec-48khz"]
    data = speech_streams["encodec-48khz"][6.0]
    path = tmp_path / f"clip{codec.extension}"
    path.write_bytes(data)
    from_file = codec.decode(path.read_bytes(), SPEECH48)
    assert np.array_equal(from_file.samples, codec.decode(data, SPEECH48).samples)
    assert codec.encode(SPEECH48, 6.0) == data  # encoding is deterministic too


@pytest.mark.parametrize("name,seconds", [("encodec-24khz", 1.0), ("encodec-48khz", 1.2)])
def test_decode_equals_the_models_own_decode_of_the_same_codes(codecs, name, seconds):
    codec = codecs[name]
    model = codec.model()
    item = clip(model.sample_rate, seconds, channels=model.channels)  # native format: no resampling
    data = codec.encode(item, 6.0)
    with torch.no_grad():
        model.set_target_bandwidth(6.0)
        frames = model.encode(torch.from_numpy(item.samples)[None])
        expected = model.decode(frames)[0, :, :item.frames].numpy()
    assert len(frames) == (2 if name == "encodec-48khz" else 1)
    assert len({int(v) for f, _ in frames for v in f.flatten()}) >= 20  # varied codes, not all zero
    assert np.array_equal(codec.decode(data, item).samples, np.clip(expected, -1.0, 1.0))


@pytest.mark.parametrize("name", ["encodec-24khz", "encodec-48khz"])
def test_rate_control_over_the_ratio_grid(codecs, speech_streams, name):
    codec, streams = codecs[name], speech_streams[name]
    ladder = codec.ladder(SPEECH48)
    chosen = []
    for ratio in RATIOS:  # 20x .. 1000x
        budget = budget_bytes(SPEECH48, parse_ratio(ratio))
        enc = codec.encode_to_budget(SPEECH48, budget)
        bw = next(b for b in ladder if codec.label(b) == enc.setting)
        assert enc.data == streams[bw] and enc.trials == 1
        fitting = [b for b in ladder if len(streams[b]) <= budget]
        if enc.rate_met:
            assert len(enc.data) <= budget and bw == max(fitting)
        else:  # even the lowest rung is too big: flagged, lowest rung returned
            assert not fitting and bw == ladder[0] and len(enc.data) > budget
        chosen.append((bw, enc.rate_met))
    bws = [bw for bw, _ in chosen]
    assert bws == sorted(bws, reverse=True)
    # 768 kbps raw: 20x = 38.4 kbps fits 24 kbps; 1000x = 0.77 kbps is below every rung
    assert chosen[0] == (24.0, True) and chosen[-1] == (ladder[0], False)
    if name == "encodec-24khz":  # 500x = 1.536 kbps: 1.5 kbps codes + the 66-byte header do not fit in 2 s
        assert chosen == [(24.0, True), (12.0, True), (6.0, True), (3.0, True), (1.5, False), (1.5, False)]
    else:
        assert chosen == [(24.0, True), (12.0, True), (6.0, True), (3.0, True), (3.0, False), (3.0, False)]


def test_lm_variant_codes_the_same_codes_with_arithmetic_coding(codecs):
    model = codecs["encodec-24khz"].model()
    lm = build_lm(model)
    codec = Encodec24Lm.from_model(model, lm)
    item = clip(24_000, 0.2)
    data = codec.encode(item, 1.5)
    assert header(data)["lm"] is True and codec.label(1.5) == "1.5kbps+lm"
    plain = codecs["encodec-24khz"].encode(item, 1.5)
    assert np.array_equal(codec.decode(data, item).samples, codecs["encodec-24khz"].decode(plain, item).samples)


def test_bad_inputs_are_codec_errors(codecs, speech_streams):
    c24, c48 = codecs["encodec-24khz"], codecs["encodec-48khz"]
    data = speech_streams["encodec-24khz"][1.5]
    with pytest.raises(CodecError, match="written by 'encodec_24khz'"):
        c48.decode(data, SPEECH48)
    with pytest.raises(CodecError, match="truncated or corrupt"):
        c24.decode(data[:-3], SPEECH48)
    with pytest.raises(CodecError, match="not an ECDC"):
        c24.decode(b"RIFF" + bytes(40), SPEECH48)
    with pytest.raises(CodecError, match="no bandwidth"):
        c24.encode(SPEECH48, 2.0)
    with pytest.raises(CodecError, match="1 or 2 channels"):
        c48.ladder(clip(48_000, 0.1, channels=3))
    with pytest.raises(CodecError, match="encodes audio"):
        c24.encode(np.zeros((8, 8, 3), np.uint8), 1.5)
    with pytest.raises(ModelNotAvailableError, match="no entropy-coding LM"):
        # an LM bitstream needs the LM; a model wrapped without one says so
        Encodec24.from_model(random_model("encodec-24khz", 0)).decode(
            Encodec24Lm.from_model(random_model("encodec-24khz", 0), build_lm(c24.model())).encode(
                clip(24_000, 0.05), 1.5), clip(24_000, 0.05))


@pytest.fixture()
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(neural_audio.WEIGHTS_ENV, raising=False)
    MODEL_CACHE.clear("encodec")  # this test's models only
    MODEL_CACHE.clear("encodec-lm")
    return tmp_path / "torch"


@pytest.mark.parametrize("cls", [Encodec24, Encodec48, Encodec24Lm, Encodec48Lm], ids=lambda c: c.name)
def test_without_checkpoints_nothing_falls_back_to_random_weights(cls, empty_torch_home, tmp_path):
    cls.validate()
    key = cls.name.removesuffix("-lm")
    expected = checkpoint_paths(key, lm=cls.use_lm)
    assert expected[0] == tmp_path / "torch" / "hub" / "checkpoints" / expected[0].name == checkpoint_dir() / \
        expected[0].name
    codec = cls()
    reason = codec.weights_missing()
    assert reason and f"mpq models pull {key}" in reason and all(str(p) in reason for p in expected)
    item = clip(48_000, 0.1)
    assert codec.ladder(item)  # settings are known without weights
    for call in (lambda: codec.encode(item, codec.ladder(item)[0]), lambda: codec.encode_to_budget(item, 10_000),
                 lambda: codec.decode(b"ECDC", item)):
        with pytest.raises(ModelNotAvailableError, match="mpq models pull"):
            call()
    assert codec._model is None


def test_checkpoints_load_only_as_plain_tensors(empty_torch_home, tmp_path, monkeypatch):
    def named_by_hash(stem: str, obj: object) -> object:
        tmp = tmp_path / "tmp.th"
        torch.save(obj, tmp)
        path = tmp_path / f"{stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.th"
        tmp.rename(path)
        return path

    # a real encodec state dict (weight-norm g/v tensors) loads with weights_only=True into a fresh model
    state = random_model("encodec-24khz", 3).state_dict()
    loaded = _load_state(named_by_hash("encodec_24khz", state))
    model = build_model("encodec-24khz")
    model.load_state_dict(loaded)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    # a pickle that asks for arbitrary objects is refused, even with a matching hash
    with pytest.raises(ModelNotAvailableError, match="weights_only=True"):
        _load_state(named_by_hash("evil", {"x": Audio(np.zeros((1, 4), np.float32), 8000)}))
    # a file whose contents do not match the hash in its name is refused before unpickling
    checkpoints = checkpoint_dir()
    checkpoints.mkdir(parents=True)
    fake = checkpoints / checkpoint_paths("encodec-24khz")[0].name
    torch.save(state, fake)
    codec = Encodec24()
    assert codec.weights_missing() is None
    with pytest.raises(ModelNotAvailableError, match="SHA-256 prefix"):
        codec.encode(clip(24_000, 0.1), 1.5)


def test_default_constructor_loads_the_cached_checkpoint(codecs, empty_torch_home, monkeypatch):
    """The whole default path: file in the hub cache -> sha256 check -> weights_only load -> process cache."""
    monkeypatch.setenv("MPQ_DEVICE", "cpu")  # the same device type as the reference codec, so the same codes
    model = codecs["encodec-24khz"].model()
    checkpoints = checkpoint_dir()
    checkpoints.mkdir(parents=True)
    tmp = checkpoints / "state.th"
    torch.save(model.state_dict(), tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    # a checkpoint named by its own hash stands in for the real one (same loader, same naming rule)
    spec = dataclasses.replace(neural_audio.SPECS["encodec-24khz"], checkpoint=f"encodec_24khz-{sha}.th")
    monkeypatch.setitem(neural_audio.SPECS, "encodec-24khz", spec)
    tmp.rename(checkpoints / spec.checkpoint)
    assert neural_audio.location("encodec-24khz", load_settings()) == (True, str(checkpoints))
    codec = Encodec24()
    assert codec.weights_missing() is None
    data = codec.encode(SPEECH48, 3.0)
    assert data == codecs["encodec-24khz"].encode(SPEECH48, 3.0)
    assert codec.model() is Encodec24().model()  # loaded once per process and device
    assert np.array_equal(codec.decode(data, SPEECH48).samples, codecs["encodec-24khz"].decode(data, SPEECH48).samples)
    with pytest.raises(ModelNotAvailableError, match="mpq models pull encodec-24khz"):
        Encodec24Lm().encode(SPEECH48, 3.0)  # the LM file is not there
