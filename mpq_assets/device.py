"""Device choice: ``MPQ_DEVICE=auto`` picks cuda > mps > cpu; batch sizes follow the device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch


@cache
def _auto() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(name: str | None = None) -> torch.device:
    """``"auto"`` (or ``None``) picks the best available; anything else is passed to torch. Callers hand in
    the deployment's ``Settings.device`` (``MPQ_DEVICE``)."""
    name = (name or "auto").strip()
    device = torch.device(_auto() if name == "auto" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"MPQ_DEVICE={name} but CUDA is not available on this machine")
    return device


def default_batch_size(device: torch.device, cpu: int = 8, gpu: int = 64) -> int:
    """Small batches on CPU keep memory flat; large ones keep a GPU busy."""
    return gpu if device.type in ("cuda", "mps") else cpu


def codec_batch_size(device: torch.device, chosen: int | None = None) -> int:
    """Items per batched transform call of a neural codec: ``chosen`` (``MPQ_CODEC_BATCH``), else 1 on CPU and
    8 on a GPU.

    On CPU a batch is no faster than single items (docs/performance.md) and one item at a time gives
    each file bit for bit what encoding it alone gives; on a GPU batches keep the device busy.
    """
    if chosen is not None:
        return chosen
    return 8 if device.type in ("cuda", "mps") else 1


def parse_codec_batch(text: str | None) -> int | None:
    """``MPQ_CODEC_BATCH`` as a number (None when unset), with an error that names the setting."""
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"MPQ_CODEC_BATCH={text!r} must be a whole number >= 1")
    return value


@contextmanager
def exact_convolutions() -> Iterator[None]:
    """cuDNN convolutions in full FP32 while a neural codec's transforms run.

    PyTorch lets cuDNN use TF32 (10-bit mantissa) by default on Ampere and newer GPUs, which moves a
    codec's latents by ~1e-3 instead of ~1e-8 and so its files and reconstructions away from the CPU's;
    a codec's output should not depend on a precision switch of the GPU it ran on.
    """
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous
