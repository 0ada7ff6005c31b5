"""MPQ: machine perceptual quality as a Dagster asset platform."""

__version__ = "0.1.0"
