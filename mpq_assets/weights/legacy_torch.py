"""Reading a pre-1.6 ``torch.save`` file (the legacy, non-zip format) into numpy arrays, with no torch code run.

Such files open with ``torch.load`` only under ``weights_only=False`` on torch >= 2.6
when they use opcodes the weights-only unpickler refuses. Here the pickles go
through :class:`~mpq_assets.weights.unpickle.RestrictedUnpickler` with four inert
stand-ins (an ``OrderedDict``, a tensor record, two storage types); storages become
records, and their raw bytes, which follow the pickles, are read and bounds-checked
by hand. Used once per conversion (CDPAM's shipped model).
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from mpq_assets.weights.unpickle import RestrictedUnpickler

MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's MAGIC_NUMBER of the pre-1.6 format
PROTOCOL = 1001


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_ref(storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                        *_: object) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(f"tensor rebuilt from {type(storage).__name__}, expected a storage")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_ref,
    ("torch", "FloatStorage"): _StorageType(np.dtype("<f4")),
    ("torch", "LongStorage"): _StorageType(np.dtype("<i8")),
}


class _Storages(dict[str, _StorageRef]):
    """The persistent-id hook: each ``("storage", type, key, location, numel, view)`` id becomes a record."""

    def __call__(self, pid: object) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        ref = self.setdefault(str(key), _StorageRef(str(key), storage_type.dtype, int(numel)))
        if ref.numel != int(numel):
            raise pickle.UnpicklingError(f"storage {key} declared with {ref.numel} and {numel} elements")
        return ref


def unpickler(fh: BinaryIO, storages: _Storages | None = None) -> RestrictedUnpickler:
    """The restricted unpickler with this format's stand-ins (for one of the file's pickles)."""
    return RestrictedUnpickler(fh, ALLOWED, persistent_load=storages if storages is not None else _Storages())


def _check_header(fh: BinaryIO) -> None:
    """Read the three small pickles that open a legacy checkpoint; refuse anything but a little-endian one."""
    magic, protocol, sys_info = (unpickler(fh).load() for _ in range(3))
    if magic != MAGIC or protocol != PROTOCOL:
        raise RuntimeError(f"not a legacy torch checkpoint (magic {magic!r}, protocol {protocol!r})")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise RuntimeError(f"unsupported checkpoint byte order: {sys_info!r}")


def _read_storages(fh: BinaryIO, keys: list[Any], storages: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    """The flat storages that follow the pickles, in ``keys`` order, each checked against its declared size."""
    raw: dict[str, np.ndarray] = {}
    for key in map(str, keys):  # each storage: little-endian int64 element count, then the elements
        ref = storages[key]
        header = fh.read(8)
        if len(header) != 8 or struct.unpack("<q", header)[0] != ref.numel:
            raise RuntimeError(f"storage {key}: size header does not match its {ref.numel} elements")
        data = fh.read(ref.numel * ref.dtype.itemsize)
        if len(data) != ref.numel * ref.dtype.itemsize:
            raise RuntimeError(f"storage {key} is truncated")
        raw[key] = np.frombuffer(data, dtype=ref.dtype)
    return raw


def _tensor_array(name: object, tensor: object, raw: dict[str, np.ndarray]) -> np.ndarray:
    """One state entry as a C-ordered copy of its strided view of a storage, refused if it reaches outside."""
    if not isinstance(tensor, _TensorRef):
        raise RuntimeError(f"state entry {name} is a {type(tensor).__name__}, not a tensor")
    flat = raw[tensor.storage.key]
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    if tensor.offset < 0 or (all(tensor.size) and last >= flat.size):
        raise RuntimeError(f"state entry {name} reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset :], shape=tensor.size, strides=[s * flat.itemsize for s in tensor.stride]
    )
    return np.array(view, order="C", copy=True)  # keeps 0-d shapes


def read_state_dict(fh: BinaryIO, entry: str = "state") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``entry`` dict of a legacy torch checkpoint as numpy arrays, and the checkpoint's other scalar fields."""
    _check_header(fh)
    storages = _Storages()
    checkpoint = unpickler(fh, storages).load()
    keys = unpickler(fh).load()
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(entry), dict):
        raise RuntimeError(f"checkpoint has no {entry!r} dict")
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise RuntimeError("checkpoint storage list does not match the storages its pickle references")
    raw = _read_storages(fh, keys, storages)
    state = {str(name): _tensor_array(name, tensor, raw) for name, tensor in checkpoint[entry].items()}
    extras = {k: v for k, v in checkpoint.items() if isinstance(v, int | float | str)}
    return state, extras
