"""furrytag: tag furry artwork with e621-style tags using a multi-head Keras model."""

__version__ = "0.1.0"
