"""CompressAI models in batches: the transforms on the device, the entropy path on the CPU one image at a time.

Why the split. An entropy-coded latent decodes only with the very probability
tables the encoder used, and those come from networks the decoder runs again:
the hyper-synthesis ``h_s`` and, in the autoregressive models, the context model
and entropy parameters. Run on another device, or in a batch of another size,
they differ in the last bits and can pick another table: the decoder then reads
garbage (NaN PSNR, black blocks; CompressAI issues #54 and #320). The analysis
transform ``g_a`` (only the encoder runs it; its rounded output is in the file)
and the synthesis ``g_s`` (after the last table is chosen) carry no such
constraint. So here:

- ``g_a`` and ``g_s`` run on the model's device over a batch of same-size images;
- everything else of CompressAI's own ``compress`` / ``decompress`` -- the
  hyper-analysis, the coding of z, ``h_s``, the autoregressive loop -- runs on a
  CPU copy, one image at a time, the same way at both ends.

A file therefore decodes on its own, whatever batch and device encoded it, on
any machine whose CPU computes the entropy path to the same bits (the same
CompressAI and torch builds on the same kind of CPU: oneDNN's AVX2 and AVX-512
kernels can differ in the last bit, CompressAI's own caveat), and the CPU is
also where CompressAI recommends running the sequential autoregressive coder.
On a GPU the transforms run in full FP32 (:func:`~mpq_assets.device.exact_convolutions`:
no TF32), so they stay within float error of the CPU's. What a
batch can change: batched convolutions differ from single-image ones by ~1e-8,
so a latent that close to a rounding boundary may round the other way (another
valid file), and a decoded pixel that close to a level boundary may move one
level. With a batch of one on the CPU the result is bit for bit CompressAI's
``model.compress(x)`` / ``model.decompress(...)`` (tested).

How. CompressAI's hyperprior models' ``compress`` begins with ``y = self.g_a(x)``
and their ``decompress`` ends with ``self.g_s(y_hat)``; we call them on a shallow
clone whose ``g_a`` returns the latent computed in the batch and whose ``g_s``
keeps its input for the batched synthesis. That holds for the zoo's models whose
tensors all live in submodules (``mbt2018``, ``cheng2020-anchor``, the
bmshj2018 family); :func:`entropy_model` refuses a model with tensors of its own
(the variable-rate models' gain vectors), whose CPU copy would miss them.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mpq_assets.codecs.batching import shape_batches
from mpq_assets.device import exact_convolutions

ENTROPY_DEVICE = torch.device("cpu")
TRANSFORMS = ("g_a", "g_s")  # the modules that run on the model's device, in batches


class _Given(nn.Module):
    """Stands in for ``g_a``: returns the latent the batch computed."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: Any) -> torch.Tensor:
        return self.value


class _Capture(nn.Module):
    """Stands in for ``g_s``: keeps the decoded latent for the batched synthesis."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        self.value = y_hat
        return y_hat.new_zeros(0)


def _with_modules(model: nn.Module, **modules: nn.Module | None) -> nn.Module:
    """A shallow clone of ``model`` (same parameters and state) with some submodules replaced."""
    clone = copy.copy(model)
    clone.__dict__["_modules"] = {**model._modules, **modules}
    return clone


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


_ENTROPY: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def entropy_model(model: nn.Module) -> nn.Module:
    """The model's entropy path on the CPU: the model itself where it lives there, else a CPU copy of all
    its submodules but ``g_a`` and ``g_s`` (made once per model)."""
    if model_device(model).type == ENTROPY_DEVICE.type:
        return model
    own = [name for name, _ in model.named_parameters(recurse=False)] + \
        [name for name, _ in model.named_buffers(recurse=False)]
    if own:
        raise TypeError(f"{type(model).__name__} holds tensors outside its submodules ({', '.join(own)}); its "
                        "entropy path cannot be split off to the CPU")
    with _LOCK:
        if model not in _ENTROPY:
            parts = {name: None if name in TRANSFORMS or module is None else copy.deepcopy(module).to(ENTROPY_DEVICE)
                     for name, module in model._modules.items()}
            _ENTROPY[model] = _with_modules(model, **parts)
        return _ENTROPY[model]


@torch.no_grad()
def compress_batch(model: nn.Module, images: Sequence[torch.Tensor], batch_size: int) -> list[dict[str, Any]]:
    """CompressAI's ``compress`` result (``{"strings": [[y], [z]], "shape": ...}``) for each padded image
    (3, H, W) in [0, 1]; images of one shape share the ``g_a`` batches."""
    device, entropy = model_device(model), entropy_model(model)
    out: list[dict[str, Any] | None] = [None] * len(images)
    for group in shape_batches([tuple(x.shape) for x in images], batch_size):
        with exact_convolutions():
            y = model.g_a(torch.stack([images[i] for i in group]).to(device)).to(ENTROPY_DEVICE)
        for j, i in enumerate(group):
            latent = y[j:j + 1]
            out[i] = _with_modules(entropy, g_a=_Given(latent)).compress(latent)
    return out  # type: ignore[return-value]


@torch.no_grad()
def decompress_batch(model: nn.Module, entries: Sequence[tuple[Sequence[bytes], Sequence[int]]],
                     batch_size: int) -> list[torch.Tensor]:
    """The padded reconstruction (3, H, W) in [0, 1], on the CPU, of each ``(strings, shape)`` (the strings
    one image's y then z, as ``compress`` gave them); latents of one shape share the ``g_s`` batches."""
    device, entropy = model_device(model), entropy_model(model)
    latents = []
    for strings, shape in entries:
        capture = _Capture()
        _with_modules(entropy, g_s=capture).decompress([[s] for s in strings], torch.Size(shape))
        assert capture.value is not None, "decompress did not run g_s"
        latents.append(capture.value)
    out: list[torch.Tensor | None] = [None] * len(entries)
    for group in shape_batches([tuple(y.shape) for y in latents], batch_size):
        with exact_convolutions():
            x_hat = model.g_s(torch.cat([latents[i] for i in group]).to(device)).clamp_(0, 1).to(ENTROPY_DEVICE)
        for j, i in enumerate(group):
            out[i] = x_hat[j].clone()  # not a view: an item must not keep its whole batch alive
    return out  # type: ignore[return-value]
