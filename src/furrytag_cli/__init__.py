"""furrytag: tag furry artwork with e621-style tags using a multi-head Keras model."""

__version__ = "0.1.0"


def __getattr__(name):
    # The library API without importing TensorFlow until it is used.
    if name == "Tagger":
        from furrytag_cli.tagging.tagger import Tagger

        return Tagger
    raise AttributeError(name)
