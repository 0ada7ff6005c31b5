"""The one error type for unusable input, so callers can turn it into an error row."""


class MediaError(ValueError):
    """An item cannot be read or normalised; the message names the reason."""
