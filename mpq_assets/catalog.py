"""Every model MPQ can load, collected from the weight sources its components declare (``mpq models``).

Codecs, quality metrics and tasks each name their weights on the class
(``weight_sources``); this module only gathers them from the registries, plugin
codecs included, so a new component's models are listed and pulled without a
central table to edit. See :mod:`mpq_assets.weights.source` for the kinds.
"""

from __future__ import annotations

from mpq_assets.codecs.registry import codec_classes
from mpq_assets.quality.registry import METRICS
from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks.registry import TASKS
from mpq_assets.weights import WeightSource


def sources() -> dict[str, WeightSource]:
    """Model name -> its weight source, codecs first, then metrics, then tasks (a shared source listed once)."""
    found: dict[str, WeightSource] = {}
    for component in [*codec_classes().values(), *METRICS.values(), *TASKS.values()]:
        for source in component.weight_sources:
            found.setdefault(source.name, source)
    return found


def _source(name: str) -> WeightSource:
    known = sources()
    if name not in known:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(known)}")
    return known[name]


def location(name: str, settings: Settings | None = None) -> tuple[bool, str]:
    """(present?, where) for one model, in the caches the ``settings`` name (default: the environment's)."""
    return _source(name).locate(settings or load_settings())


def pull(name: str, settings: Settings | None = None) -> str:
    """Fetch one model into its normal cache (network for hub and download kinds); returns where it is."""
    source = _source(name)
    try:
        return source.pull(settings or load_settings())
    except Exception as exc:
        raise RuntimeError(f"could not fetch {name}: {type(exc).__name__}: {exc}. Hub models need network "
                           "access; on an offline machine copy the cache folder shown by `mpq models` from a "
                           "machine that has it.") from exc
