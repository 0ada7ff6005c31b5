"""The shared error for model weights that are not on this machine (tasks and neural codecs)."""


class ModelNotAvailableError(RuntimeError):
    """A model's weights are not here (no cache, no network); the message says how to get them."""
