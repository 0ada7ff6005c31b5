"""The only ways MPQ reads weights at run time: ``torch.load(weights_only=True)`` and safetensors.

Neither runs code from the file: ``weights_only`` unpickles tensors, containers and
plain data (plus the classes a caller allow-lists), safetensors holds raw tensors and
string metadata. Errors name the file and say why, so a user can replace it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpq_assets.artifacts import atomic_write_bytes
from mpq_assets.weights.errors import ModelNotAvailableError, UnsafeCheckpointError

if TYPE_CHECKING:
    import torch


def load_checkpoint(path: str | os.PathLike[str], what: str = "checkpoint", *, allow: Sequence[Any] = (),
                    hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with ``allow`` as extra safe globals.

    A file that needs more than that raises :class:`UnsafeCheckpointError`; an
    unreadable one :class:`ModelNotAvailableError`; both name ``path`` and ``what``.
    """
    import torch

    path = Path(path)
    try:
        if allow:
            with torch.serialization.safe_globals(list(allow)):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: the {what} is not a plain tensor checkpoint (torch.load with "
            f"weights_only=True failed; a tampered file?). {hint}\nDetails: {exc}".replace(" \n", "\n")) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot read the {what} {path}: {type(exc).__name__}: {exc}") from exc


def state_dict(checkpoint: Any, path: str | os.PathLike[str], nested: Sequence[str] = ("state_dict",)
               ) -> dict[str, torch.Tensor]:
    """The tensor dict of a loaded checkpoint (training checkpoints nest it under one of ``nested``)."""
    for key in nested:
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, Mapping):
        raise ModelNotAvailableError(f"{path} is not a state dict (found {type(checkpoint).__name__})")
    return dict(checkpoint)


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, on the CPU."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 - not iterable
    except (SafetensorError, OSError) as exc:
        raise ModelNotAvailableError(f"cannot read the safetensors file {path}: {exc}") from exc
    return tensors, metadata


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ModelNotAvailableError(f"cannot read the safetensors file {path}: {exc}") from exc


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str]) -> Path:
    """Write tensors and metadata atomically (a reader never sees half a conversion)."""
    from safetensors.torch import save

    return atomic_write_bytes(path, save(dict(tensors), metadata=dict(metadata)))
