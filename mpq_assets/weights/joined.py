"""Model folders shipped split across PyPI packages (PyPI caps a file near 100 MB): joined once, hash-checked.

A :class:`SplitModel` names its packages, the parts of its one large file in order
and the small files that go beside it. :func:`joined_folder` writes the folder under
the models cache: the parts are concatenated to a temporary name, checked against
the expected size and SHA-256, and only then renamed into place, so the cache never
holds a half-joined or wrong file. Every call checks the joined file's hash again
before returning it (a replaced or truncated file is refused, not loaded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mpq_assets.weights.errors import ModelNotAvailableError
from mpq_assets.weights.files import package_file, sha256_file


@dataclass(frozen=True)
class SplitModel:
    name: str                             # folder name under the models cache
    file: str                             # the joined file's name (e.g. model.bin)
    parts: tuple[tuple[str, str], ...]    # (import name of the package, path inside it), in order
    beside: tuple[tuple[str, str], ...]   # small files copied next to it: (package, path inside it)
    size: int
    sha256: str

    @property
    def install(self) -> str:
        packages = dict.fromkeys(pkg.replace("_", "-") for pkg, _ in (*self.parts, *self.beside))
        return "pip install " + " ".join(packages)


def _package_file(package: str, inner: str, model: SplitModel) -> Path:
    return package_file(package, inner, f"{model.name} needs it: {model.install}")


def installed(model: SplitModel) -> bool:
    """Whether every package holding a part is installed (nothing is read)."""
    return all(importlib.util.find_spec(pkg) is not None for pkg, _ in (*model.parts, *model.beside))


def _join(model: SplitModel, folder: Path) -> None:
    parts = [_package_file(pkg, inner, model) for pkg, inner in model.parts]
    beside = [_package_file(pkg, inner, model) for pkg, inner in model.beside]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{model.file}.{os.getpid()}.tmp"
    digest, size = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ModelNotAvailableError(
                f"{model.name}: the joined parts are {size:,} bytes with SHA-256 {digest.hexdigest()[:16]}..., "
                f"expected {model.size:,} bytes and {model.sha256[:16]}... (a part is truncated or from another "
                f"release); reinstall: {model.install}")
        for src in beside:
            shutil.copyfile(src, folder / src.name)
        os.replace(tmp, folder / model.file)
    finally:
        tmp.unlink(missing_ok=True)


def joined_folder(model: SplitModel, models_dir: Path) -> Path:
    """The model's folder under ``models_dir``, joined from its packages on first use; its large file's
    SHA-256 is checked on every call."""
    folder = models_dir / model.name
    target = folder / model.file
    if not target.is_file() or any(not (folder / Path(inner).name).is_file() for _, inner in model.beside):
        _join(model, folder)
    if target.stat().st_size != model.size or sha256_file(target) != model.sha256:
        raise ModelNotAvailableError(
            f"{target} does not match the SHA-256 of {model.name} (replaced or truncated); delete {folder} and it "
            "is joined again from the installed packages")
    return folder
