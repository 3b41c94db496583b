"""Datasets from e621's export: build, fetch images, pack TFRecords, synthesize."""
