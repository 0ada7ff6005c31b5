"""Source separation (Demucs) and SDR through their real code paths.

No Demucs weights are reachable here, so the task runs small randomly initialised
HTDemucs (v4) and HDemucs (v3) models through demucs' real ``apply_model``; the
loading code is exercised on checkpoints written in demucs' own formats (a
``.th`` package, a HuggingFace-cache bag of safetensors). SDR is checked against
known answers and against ``museval.metrics.bss_eval`` itself. Random weights are
for tests only.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mpq_assets.media.audio import Audio
from mpq_assets.settings import REPO_ROOT
from mpq_assets.tasks import sdr, separation
from mpq_assets.tasks.base import Prediction
from mpq_assets.tasks.hf import ModelNotAvailableError
from mpq_assets.tasks.separation import SourceSeparation, UnsafeCheckpointError
from mpq_assets.weights import MODEL_CACHE, errors

pytestmark = pytest.mark.fast  # the `make check` tier

SOURCES = ["drums", "bass", "other", "vocals"]
BWV269 = REPO_ROOT / "data" / "demo_music" / "bwv269"


def _museval_metrics():
    """museval's metrics module alone: the package __init__ imports stempeg, which needs ffmpeg."""
    spec = importlib.util.find_spec("museval")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("_museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _tiny_htdemucs(segment: float | Fraction = 2):
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    # depth 4 keeps the cross-transformer sequence short (depth 2 attends over ~11k steps: slow on CPU)
    return HTDemucs(sources=SOURCES, channels=8, depth=4, t_layers=1, t_heads=1, segment=segment).eval()


def _tiny_hdemucs():
    from demucs.hdemucs import HDemucs

    torch.manual_seed(1)
    # the hybrid branches need depth >= 5; 2 s segments instead of 40 s keep the padded chunks small
    return HDemucs(sources=SOURCES, channels=8, depth=5, segment=2).eval()


def _clip(rate: int, channels: int, seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 660 * t)
    x = tone[None, :] + 0.05 * rng.standard_normal((channels, t.size))
    return Audio(x.astype(np.float32), rate)


@pytest.fixture(autouse=True)
def _fresh_model_cache() -> Iterator[None]:
    MODEL_CACHE.clear("demucs")
    yield
    MODEL_CACHE.clear("demucs")


@pytest.fixture(scope="module")
def tiny_ht() -> SourceSeparation:
    return SourceSeparation.from_model(_tiny_htdemucs(), name="tiny-htdemucs")


# ------------------------------------------------------------------------- SDR

def test_nsdr_known_snr() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 2, 44100))
    noise = rng.standard_normal(ref.shape)
    for snr_db in (-5.0, 0.0, 12.0, 30.0):
        scale = np.sqrt(np.sum(ref ** 2, axis=(1, 2)) / np.sum(noise ** 2, axis=(1, 2)) / 10 ** (snr_db / 10))
        est = ref + scale[:, None, None] * noise
        assert sdr.nsdr(ref, est) == pytest.approx([snr_db, snr_db], abs=0.1)
        # stationary noise at one SNR everywhere: every 1 s window gives it too
        assert sdr.bss_sdr(ref, est, 44100) == pytest.approx([snr_db, snr_db], abs=0.5)
    expected = 10 * np.log10((np.sum(ref ** 2, axis=(1, 2)) + sdr.NSDR_DELTA) / sdr.NSDR_DELTA)
    np.testing.assert_allclose(sdr.nsdr(ref, ref), expected)  # MDX: the 1e-7 delta bounds it


def test_bss_sdr_matches_museval() -> None:
    metrics = _museval_metrics()
    rate, n = 44100, 3 * 44100
    rng = np.random.default_rng(1)
    t = np.arange(n) / rate
    ref = np.stack([
        np.stack([0.5 * np.sin(2 * np.pi * 220 * t), 0.4 * np.sin(2 * np.pi * 220 * t + 0.3)]),
        0.2 * rng.standard_normal((2, n)),
    ])
    ref[1, :, rate:2 * rate] = 0.0  # source 2 silent in second 2: museval skips that window for both
    est = ref + 0.05 * rng.standard_normal(ref.shape)
    est[0] += 0.1 * ref[1]                        # interference
    est[1] += 0.2 * np.roll(ref[0], 30, axis=-1)  # delayed interference
    est[1, :, -rate // 2:] *= 0.5                 # gain error in the last half second
    theirs = metrics.bss_eval(np.moveaxis(ref, 1, 2), np.moveaxis(est, 1, 2), window=rate, hop=rate,
                              compute_permutation=False, framewise_filters=False,
                              bsseval_sources_version=False)[0]
    ours = sdr.bss_sdr_frames(ref, est, window=rate, hop=rate)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[:, 1]).all()
    np.testing.assert_allclose(ours[~np.isnan(ours)], theirs[~np.isnan(theirs)], atol=0.05)
    np.testing.assert_allclose(sdr.bss_sdr(ref, est, rate), np.nanmedian(theirs, axis=1), atol=0.05)


def test_sdr_edge_cases() -> None:
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((2, 1, 30000))
    assert sdr.bss_sdr(ref, ref, 8000).tolist() == [sdr.SDR_CAP_DB, sdr.SDR_CAP_DB]
    silent = ref.copy()
    silent[1] = 0.0  # a source silent throughout: NaN for it, the other still scored
    result = sdr.bss_sdr(silent, silent + 0.1, 8000)
    assert np.isnan(result[1]) and np.isfinite(result[0])
    assert sdr.windows(30000, 8000, 8000) == [slice(0, 8000), slice(8000, 16000), slice(16000, 24000)]
    assert sdr.windows(500, 8000, 8000) == [slice(0, 500)]
    assert sdr.pad_or_truncate(np.ones((2, 5)), 7).shape == (2, 7)
    with pytest.raises(ValueError, match="differ in shape"):
        sdr.nsdr(ref, ref[:, :, :10])


# ------------------------------------------------------------------------ task

@pytest.mark.parametrize("kind", ["htdemucs", "hdemucs"])
def test_separation_shapes_and_reference(kind: str, tiny_ht: SourceSeparation) -> None:
    task = tiny_ht if kind == "htdemucs" else SourceSeparation.from_model(_tiny_hdemucs(), name="tiny-hdemucs")
    assert task.info.name == "separation" and task.info.modality == "audio"
    assert task.sources == SOURCES
    items = [_clip(44100, 2, 2.0), _clip(16000, 1, 1.0, seed=3)]
    preds = task.predict(items)
    for item, pred in zip(items, preds, strict=True):
        assert pred.array is not None and pred.array.dtype == np.float32
        assert pred.array.shape == (4, item.channels, item.frames)
        assert np.isfinite(pred.array).all()
        assert pred.summary["sources"] == SOURCES and pred.summary["sample_rate"] == item.sample_rate
        assert set(pred.summary["rms"]) == set(SOURCES)
        json.dumps(pred.summary)
    again = task.predict(items[:1])[0]
    np.testing.assert_array_equal(again.array, preds[0].array)  # shifts=0: deterministic

    rows = task.score_reference(["a", "b"], preds, preds)
    per_item = {(r.item_id, r.metric): r.value for r in rows if r.item_id}
    assert per_item[("a", "sdr_ref")] == sdr.SDR_CAP_DB  # identical: capped, not inf
    assert per_item[("b", "sdr_ref_bass")] >= 100.0
    assert per_item[("a", "nsdr_ref")] > 30.0
    aggregate = {r.metric: r for r in rows if r.item_id is None}
    assert aggregate["sdr_ref"].n == 2 and aggregate["sdr_ref"].value == sdr.SDR_CAP_DB
    assert {f"sdr_ref_{s}" for s in SOURCES} <= set(aggregate)

    # a distorted separation scores lower than the reference against itself
    noisy = [Prediction(p.summary, p.array + 0.01 * np.random.default_rng(0).standard_normal(p.array.shape)
                        .astype(np.float32)) for p in preds]
    worse = {r.metric: r.value for r in task.score_reference(["a", "b"], noisy, preds) if r.item_id is None}
    assert worse["sdr_ref"] < 100.0 and np.isfinite(worse["nsdr_ref"])


def test_shifts_are_deterministic() -> None:
    task = SourceSeparation.from_model(_tiny_htdemucs(), name="tiny", shifts=1)
    item = _clip(44100, 2, 1.0)
    first, second = task.predict([item])[0], task.predict([item])[0]
    np.testing.assert_array_equal(first.array, second.array)


def test_score_labels_written_stems(tmp_path: Path, tiny_ht: SourceSeparation) -> None:
    item = _clip(16000, 1, 1.0, seed=5)
    bass = 0.5 * item.samples
    sf.write(tmp_path / "bass.flac", bass.T, 16000)
    sf.write(tmp_path / "piano.flac", (0.5 * item.samples).T, 16000)
    pred = tiny_ht.predict([item])[0]
    labels = [{"Bass": str(tmp_path / "bass.flac"), "piano": str(tmp_path / "piano.flac")}, None]
    rows = tiny_ht.score_labels(["x", "y"], [pred, pred], labels)
    metrics = {(r.item_id, r.metric) for r in rows}
    assert {("x", "sdr_bass"), ("x", "nsdr_bass"), ("x", "sdr"), ("x", "nsdr")} <= metrics
    assert not any("piano" in m for _, m in metrics) and not any(i == "y" for i, _ in metrics)
    by = {(r.item_id, r.metric): r for r in rows}
    assert by[("x", "sdr")].value == by[("x", "sdr_bass")].value  # mean over the one matched stem
    assert by[(None, "sdr_bass")].n == 1

    # an estimate equal to the label stem scores the cap; a nearly-equal one high but finite
    exact = Prediction(pred.summary, np.stack([np.zeros_like(bass), bass, bass, bass]).astype(np.float32))
    sf.write(tmp_path / "bass16.wav", bass.T, 16000, subtype="FLOAT")
    rows = tiny_ht.score_labels(["x"], [exact], [json.dumps({"bass": str(tmp_path / "bass16.wav")})])
    assert {r.metric: r.value for r in rows if r.item_id}["sdr_bass"] == sdr.SDR_CAP_DB


def test_score_labels_demo_track(tiny_ht: SourceSeparation) -> None:
    """The committed Bach chorale: only its "bass" voice is a source of a drums/bass/other/vocals model."""
    from mpq_assets.media.audio import load_audio

    mixture = load_audio(BWV269 / "mixture.flac")
    label = json.dumps({s: str(BWV269 / f"{s}.flac") for s in ("soprano", "alto", "tenor", "bass")})
    pred = tiny_ht.predict([mixture])[0]
    assert pred.array.shape == (4, 2, mixture.frames)
    rows = tiny_ht.score_labels(["bwv269"], [pred], [label])
    metrics = {r.metric for r in rows}
    assert metrics == {"sdr_bass", "nsdr_bass", "sdr", "nsdr"}
    assert all(np.isfinite(r.value) for r in rows)
    # the bass stem itself as the "bass" estimate: a perfect score through the same path
    perfect = pred.array.copy()
    perfect[1] = load_audio(BWV269 / "bass.flac").samples
    rows = tiny_ht.score_labels(["bwv269"], [Prediction(pred.summary, perfect)], [label])
    assert {r.metric: r.value for r in rows if r.item_id}["sdr_bass"] == sdr.SDR_CAP_DB


# --------------------------------------------------------------------- loading

@pytest.fixture()
def offline_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MPQ_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_missing_pretrained_is_a_clear_error(offline_caches: Path) -> None:
    task = SourceSeparation(model="htdemucs")
    with pytest.raises(ModelNotAvailableError) as err:
        task.predict([_clip(44100, 2, 0.5)])
    message = str(err.value)
    assert "mpq models pull htdemucs" in message and "downloads are off" in message
    assert str(offline_caches / "torch" / "hub" / "checkpoints") in message
    assert "955717e8-8726e21a.th" in message  # the legacy file to fetch by hand
    with pytest.raises(ModelNotAvailableError, match="hdemucs_mmi"):
        SourceSeparation(model="hdemucs_mmi").load()
    with pytest.raises(ModelNotAvailableError, match="Known demucs names"):
        SourceSeparation(model="no_such_model").load()
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        SourceSeparation(model=str(offline_caches / "missing.th")).load()


def _package(model: torch.nn.Module) -> dict:
    """A package as demucs' ``serialize_model`` writes it (half-precision state, training args)."""
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    return {"klass": type(model), "args": args, "kwargs": kwargs, "state": get_state(model, None, half=True),
            "training_args": {"seed": 42, "lr": np.float64(3e-4), "dset": {"segment": 11, "sources": list(SOURCES)}}}


def test_th_package_loads_with_weights_only(tmp_path: Path) -> None:
    from demucs.states import save_with_checksum

    model = _tiny_htdemucs(segment=Fraction(39, 20))  # the real htdemucs stores its segment as a Fraction
    save_with_checksum(_package(model), tmp_path / "tinysig.th")
    (path,) = tmp_path.glob("tinysig-*.th")
    task = SourceSeparation(model=str(path))
    loaded = task.load()
    assert task.model_id == str(path.resolve())
    assert loaded.segment == Fraction(39, 20)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.half().float())
    assert task.predict([_clip(44100, 2, 1.0)])[0].array.shape == (4, 2, 44100)


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_th_with_foreign_objects_is_refused(tmp_path: Path) -> None:
    assert UnsafeCheckpointError is errors.UnsafeCheckpointError  # one refusal error, still importable here
    package = _package(_tiny_hdemucs())
    package["training_args"] = _Evil(tmp_path / "pwned")
    torch.save(package, tmp_path / "evil.th")
    with pytest.raises(UnsafeCheckpointError, match="allow-list"):
        SourceSeparation(model=str(tmp_path / "evil.th")).load()
    assert not (tmp_path / "pwned").exists()
    # an allow-listed global in the class slot that is not a model class
    package = _package(_tiny_hdemucs())
    package["klass"] = Fraction
    torch.save(package, tmp_path / "odd.th")
    with pytest.raises(UnsafeCheckpointError, match="not a demucs model class"):
        separation.load_th(tmp_path / "odd.th")


def _write_safetensors(path: Path, model: torch.nn.Module, klass: str | None = None) -> None:
    from safetensors.torch import save_file

    def encode(value):
        if isinstance(value, Fraction):
            return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
        return value

    args, kwargs = model._init_args_kwargs
    metadata = {"klass": klass or f"{type(model).__module__}.{type(model).__name__}",
                "args": json.dumps([encode(a) for a in args]),
                "kwargs": json.dumps({k: encode(v) for k, v in kwargs.items()})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)


def test_hf_cache_bag_loads_offline(offline_caches: Path) -> None:
    """``htdemucs`` from a HuggingFace cache laid out as hf_hub_download leaves it (adefossez/HTDemucs)."""
    from demucs.apply import BagOfModels

    repo = offline_caches / "hf" / "models--adefossez--HTDemucs"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "htdemucs.yaml").write_text("models: ['abcd1234']\n")
    model = _tiny_htdemucs(segment=Fraction(39, 20))
    _write_safetensors(snapshot / "abcd1234.safetensors", model)

    task = SourceSeparation(model="htdemucs")
    loaded = task.load()
    assert isinstance(loaded, BagOfModels) and loaded.sources == SOURCES
    expected = SourceSeparation.from_model(model).predict([_clip(44100, 2, 1.0)])[0].array
    np.testing.assert_allclose(task.predict([_clip(44100, 2, 1.0)])[0].array, expected, atol=1e-5)
    assert MODEL_CACHE.get(("demucs", "htdemucs", "cpu"), lambda: None) is loaded  # cached per (name, device)

    _write_safetensors(snapshot / "abcd1234.safetensors", model, klass="os.system")
    with pytest.raises(UnsafeCheckpointError, match="not a demucs model class"):
        separation.load_pretrained("htdemucs")


def test_partition_sdr_is_the_mean_over_stems_of_per_stem_medians() -> None:
    """SiSEC/MUSDB: median over tracks per stem, then the mean over stems (not the median of track means)."""
    from mpq_assets.tasks.base import Score

    bass, vocals = [1.0, 2.0, 10.0], [9.0, 0.0, 4.0]
    rows = []
    for i, (b, v) in enumerate(zip(bass, vocals, strict=True)):
        rows += [Score("sdr_bass", b, f"t{i}"), Score("sdr_vocals", v, f"t{i}"), Score("sdr", (b + v) / 2, f"t{i}")]
        rows += [Score("sdr_ref_bass", b + 5, f"t{i}"), Score("sdr_ref", b + 5, f"t{i}")]
    agg = {s.metric: (s.value, s.n) for s in SourceSeparation._aggregates(rows)}
    assert agg["sdr_bass"] == (2.0, 3) and agg["sdr_vocals"] == (4.0, 3)
    assert agg["sdr"] == (3.0, 3)  # the median of the track means [5, 1, 7] would say 5
    # sdr_ref and sdr_ref_* are neither stems of sdr nor does sdr_ref count its own headline
    assert agg["sdr_ref"] == (7.0, 3) and agg["sdr_ref_bass"] == (7.0, 3)
    # over a subset of tracks (what an analysis restricts to): the same convention on those tracks
    two = [r for r in rows if r.item_id in ("t0", "t2")]
    assert SourceSeparation.aggregate("sdr", two) == pytest.approx(((1 + 10) / 2 + (9 + 4) / 2) / 2)
