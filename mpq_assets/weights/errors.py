"""What loading weights raises: one error a user can act on, and its refusal flavour for unsafe files."""

from __future__ import annotations


class ModelNotAvailableError(RuntimeError):
    """A model's weights are not here (no cache, no network); the message says how to get them."""


class UnsafeCheckpointError(ModelNotAvailableError):
    """A checkpoint asks for code or objects the safe loaders do not build (it may have been tampered with)."""
