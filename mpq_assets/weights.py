"""Shared pieces for model weights: the missing-weights error and file hashing for checksum checks."""

from __future__ import annotations

import hashlib
import os


class ModelNotAvailableError(RuntimeError):
    """A model's weights are not here (no cache, no network); the message says how to get them."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
