"""The model cache: its layout, downloads, Google Drive, archives, the registry, installing."""
