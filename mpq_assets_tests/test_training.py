"""Training on fixed features: reproducible from the seed (the same weights hash), a linear probe that reaches
the known accuracy of a separable set, trained models round-tripping through safetensors, and the command-word
corpus split by voice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpq_assets.datasets.registry import make_dataset
from mpq_assets.media.audio import Audio
from mpq_assets.training import Hyper, LinearProbe, MelCNN, fit, load, predict, save

pytestmark = [pytest.mark.fast, pytest.mark.usefixtures("one_torch_thread")]


def _separable(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Points in 8-d labelled by the sign of two fixed directions (4 classes), none within 0.5 of a boundary."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (4 * n, 8))
    a, b = x[:, 0] + x[:, 1], x[:, 2] - x[:, 3]
    keep = (np.abs(a) > 0.5) & (np.abs(b) > 0.5)
    x, a, b = x[keep][:n], a[keep][:n], b[keep][:n]
    labels = [f"{'p' if u > 0 else 'n'}{'p' if v > 0 else 'n'}" for u, v in zip(a, b, strict=True)]
    return torch.tensor(x, dtype=torch.float32), labels


def test_linear_probe_reaches_the_known_accuracy_of_a_separable_set() -> None:
    probe = LinearProbe(backbone=lambda items: torch.stack(list(items)), hyper=Hyper(epochs=60, lr=0.05))
    x, y = _separable(400, seed=0)
    classes = sorted(set(y))
    model = fit(probe, probe.features(list(x)), y, classes, seed=0)
    x_test, y_test = _separable(400, seed=1)
    guessed = [classes[i] for i in predict(model, probe.features(list(x_test))).argmax(dim=1).tolist()]
    assert np.mean([g == t for g, t in zip(guessed, y_test, strict=True)]) == 1.0
    # the curve: running figures during each epoch (batch statistics, weights still moving)
    assert model.curve[-1]["train_accuracy"] > 0.9 and model.curve[-1]["loss"] < model.curve[0]["loss"] / 3
    assert len(model.curve) == 60 and model.config["backbone"] == "<lambda>"


def _clips(split: str, per_word: int) -> tuple[list[Audio], list[str]]:
    items = list(make_dataset("demo_commands", split=split).items())
    picked: dict[str, list] = {}
    for item in items:
        if len(picked.setdefault(item.label, [])) < per_word:
            picked[item.label].append(item)
    chosen = [i for group in picked.values() for i in group]
    return [i.load() for i in chosen], [i.label for i in chosen]


def test_training_is_reproducible_from_its_seed_and_round_trips(tmp_path) -> None:
    recipe = MelCNN(hyper=Hyper(epochs=3, batch_size=16))
    clips, labels = _clips("train", 4)
    x = recipe.features(clips)
    assert tuple(x.shape) == (40, 1, 40, 101)
    classes = sorted(set(labels))
    before = torch.random.get_rng_state()
    a, b = fit(recipe, x, labels, classes, seed=7), fit(recipe, x, labels, classes, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left as it was
    assert a.sha256 == b.sha256 and a.curve == b.curve
    assert fit(recipe, x, labels, classes, seed=8).sha256 != a.sha256
    path = save(a, tmp_path / "kws" / "seed7.safetensors")
    back = load(path)
    assert back.sha256 == a.sha256 and back.classes == classes and back.config == recipe.config()
    assert torch.equal(predict(back, x), predict(a, x))
    # a tensor edited in the file no longer matches its recorded hash
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    state = load_file(str(path))
    name = sorted(state)[-1]
    state[name] = state[name] + 1
    save_file(state, str(path), metadata=meta)
    with pytest.raises(ValueError, match="do not match their recorded sha256"):
        load(path)


def test_fit_rejects_labels_outside_its_classes() -> None:
    probe = LinearProbe(backbone=lambda items: torch.stack(list(items)))
    x, y = _separable(20, seed=2)
    with pytest.raises(ValueError, match=r"labels \['pp'\] are not among the classes"):
        fit(probe, x, y, ["nn", "np", "pn"], seed=0)


def test_mel_features_resample_and_mix_down() -> None:
    recipe = MelCNN()
    t = np.arange(48_000) / 48_000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    tone16k = np.sin(2 * np.pi * 440 * np.arange(8_000) / 16_000).astype(np.float32)
    short = Audio(tone16k[None], 16_000)  # half a second: padded to one
    feats = recipe.features([Audio(stereo, 48_000), short])
    assert tuple(feats.shape) == (2, 1, 40, 101)
    # the 440 Hz tone peaks in the same mel band at either rate
    assert int(feats[0, 0, :, 20].argmax()) == int(feats[1, 0, :, 20].argmax())


def test_command_corpus_is_split_by_voice() -> None:
    train = list(make_dataset("demo_commands", split="train").items())
    test = list(make_dataset("demo_commands", split="test").items())
    assert (len(train), len(test)) == (260, 160)
    voices = [{i.extra["voice"] for i in part} for part in (train, test)]
    assert not voices[0] & voices[1] and (len(voices[0]), len(voices[1])) == (13, 8)
    words = {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"}
    assert {i.label for i in train} == {i.label for i in test} == words
    clip = test[0].load()
    assert clip.sample_rate == 16_000 and clip.samples.shape == (1, 16_000)
    with pytest.raises(ValueError, match="split must be one of"):
        make_dataset("demo_commands", split="validation")


def test_shape_images_are_deterministic_and_split_by_palette() -> None:
    from mpq_assets.datasets.shapes import PALETTES, SHAPES

    train = list(make_dataset("demo_shapes", split="train").items())
    test = list(make_dataset("demo_shapes", split="test", per_class=3).items())
    assert len(train) == 24 * len(SHAPES) and len(test) == 3 * len(SHAPES)
    assert {i.label for i in train} == {i.label for i in test} == set(SHAPES)
    assert not set(PALETTES["train"]) & set(PALETTES["test"])
    assert not {i.item_id for i in train} & {i.item_id for i in test}
    a, b = train[5].load(), train[5].load()
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, train[6].load())


def test_linear_probe_on_a_huggingface_backbone(tmp_path, monkeypatch) -> None:
    """The hub-loading path on a tiny randomly initialised ViT saved like a checkpoint (never in a result)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from mpq_assets.weights import ModelNotAvailableError

    torch.manual_seed(0)
    folder = tmp_path / "tiny-vit"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                       image_size=32, patch_size=8)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    probe = LinearProbe(backbone=f"hf:{folder}", hyper=Hyper(epochs=2))
    images = [np.random.default_rng(k).integers(0, 256, (40, 48, 3), dtype=np.uint8) for k in range(6)]
    feats = probe.features(images)
    assert tuple(feats.shape) == (6, 32) and torch.isfinite(feats).all()
    assert torch.equal(feats, probe.features(images))  # the same backbone, loaded once, in eval mode
    model = fit(probe, feats, ["a", "b"] * 3, ["a", "b"], seed=0)
    assert model.config["backbone"] == f"hf:{folder}" and predict(model, feats).shape == (6, 2)
    monkeypatch.setenv("MPQ_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="downloads are off"):
        LinearProbe(backbone="hf:nobody/no-such-vit").features(images)
