"""Foundations every package uses: errors, YAML reading, data files, TensorFlow import, progress, Ctrl-C."""
