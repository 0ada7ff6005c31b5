"""Model weights: declared sources, verified files, safe loading and the per-process model cache.

Every component that needs weights goes through this package: it declares a
:class:`WeightSource` (``mpq models`` lists and pulls it), checks files with
:mod:`~mpq_assets.weights.files`, loads them with :mod:`~mpq_assets.weights.safe_load`
(``weights_only=True`` or safetensors; pickles only in the one-time conversions of
:mod:`~mpq_assets.weights.unpickle`) and keeps the loaded model in
:data:`~mpq_assets.weights.cache.MODEL_CACHE`.
"""

from mpq_assets.weights.cache import MODEL_CACHE, ModelCache, cached
from mpq_assets.weights.errors import ModelNotAvailableError, UnsafeCheckpointError
from mpq_assets.weights.files import sha256_file
from mpq_assets.weights.source import WeightSource

__all__ = ["MODEL_CACHE", "ModelCache", "ModelNotAvailableError", "UnsafeCheckpointError", "WeightSource", "cached",
           "sha256_file"]
