"""Tagging images: finding them, decoding, the pipeline, scores to tags, outputs, resume, the run."""
