"""How the registries build a component: with the options its constructor takes.

A step hands every component the deployment's settings (and device, batch size); a plugin or a simple
metric whose constructor does not take one of them is built without it, so it keeps working unchanged.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def build(cls: type[T], *args: Any, **options: Any) -> T:
    """``cls(*args, **options)`` with the options that are not None and that ``cls``'s constructor accepts."""
    parameters = inspect.signature(cls).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return cls(*args, **{k: v for k, v in options.items() if v is not None and (takes_all or k in parameters)})
