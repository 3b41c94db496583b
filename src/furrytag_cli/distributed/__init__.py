"""Tagging on a Ray cluster: the same tags as ``furrytag tag``, from many machines.

runtime (importing Ray, joining or starting a cluster), sources (local files and object-store
URIs to tag), shards (the output folder: Parquet or JSONL shards, written whole), stages (the
decoding tasks and the model workers), run (one whole run, ``tag_on_ray``).
"""
