"""What a codec hands back, and what it raises: kept apart from the interface so rate control can use them."""

from __future__ import annotations

from dataclasses import dataclass


class CodecError(RuntimeError):
    """A codec failed on one item; the message says which setting and why."""


@dataclass(frozen=True)
class Encoded:
    """One item's bitstream at the setting rate control chose.

    ``trials``: encodes this search made (an encode shared with an earlier budget of the same item counts
    once, for the first budget that needed it); ``seconds``: their time, when the search measured it.
    """

    data: bytes
    setting: str
    rate_met: bool
    trials: int
    seconds: float | None = None
