"""Per-epoch training logs: ``log.csv``, ``log.jsonl`` and TensorBoard scalars."""

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from furrytag_cli.core.atomic import AtomicFile, write_text
from furrytag_cli.core.tfruntime import tensorflow

LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
TENSORBOARD = "tensorboard"


def write_logs(run_dir: Path, history: Sequence[Mapping]) -> None:
    """Rewrite the CSV and JSON-lines logs from the whole ``history`` (one row an epoch)."""
    run_dir = Path(run_dir)
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with AtomicFile(run_dir / LOG_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    write_text(run_dir / LOG_JSONL, "".join(json.dumps(dict(row)) + "\n" for row in history))


class TensorBoardLog:
    """Scalars of each epoch row under ``RUN_DIR/tensorboard`` (train and val curves)."""

    def __init__(self, run_dir: Path) -> None:
        tf = tensorflow()
        self._writer = tf.summary.create_file_writer(str(Path(run_dir) / TENSORBOARD))

    def write(self, row: Mapping) -> None:
        tf = tensorflow()
        # tf.summary.scalar needs the tensorboard package; this is the record it writes.
        from tensorflow.core.framework.summary_pb2 import SummaryMetadata

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
        with self._writer.as_default():
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    tf.summary.write(
                        key,
                        tf.constant(value, tf.float32),
                        step=int(row["epoch"]),
                        metadata=metadata,
                    )
        self._writer.flush()
