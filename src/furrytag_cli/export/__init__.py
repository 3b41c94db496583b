"""Exporting models for other runtimes and tools: ONNX, LiteRT, Keras; furrytag's own
bundle layout and the wd14 taggers' layout; a model card."""
