"""In-memory media: the normalised form every codec, metric and task sees."""

from mpq_assets.media.audio import Audio, load_audio, write_audio_flac
from mpq_assets.media.errors import MediaError
from mpq_assets.media.image import load_image, write_image_png

__all__ = ["Audio", "MediaError", "load_audio", "load_image", "write_audio_flac", "write_image_png"]
