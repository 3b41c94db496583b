"""Where a LiteRT conversion spends its time and memory, phase by phase.

    python scripts/profile_conversion.py MODEL [--normalized]

MODEL is a bundle folder or a legacy SavedModel (e.g. the one bench_tag.py writes).
Prints, per phase, wall seconds, CPU seconds and the resident memory after it and at
its peak: importing TensorFlow, loading the Keras model, tracing the serving function,
and the converter's own steps (freezing variables into constants, then the MLIR passes
and the flatbuffer), plus the flatbuffer's size. For a legacy model it also times the
converter straight on the SavedModel's serving signature (no Keras load, no tracing).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def memory_mb() -> tuple[float, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            values[key] = int(value.split()[0]) / 1024
    return round(values["VmRSS"]), round(values["VmHWM"])


class Phases:
    def __init__(self):
        self.rows, self.mark = [], (time.perf_counter(), time.process_time())

    def done(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        rss, peak = memory_mb()
        self.rows.append(
            {
                "phase": name,
                "wall_s": round(wall - self.mark[0], 1),
                "cpu_s": round(cpu - self.mark[1], 1),
                "rss_mb": rss,
                "peak_rss_mb": peak,
            }
        )
        self.mark = (wall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--normalized", action="store_true")
    args = parser.parse_args()
    phases = Phases()
    from furrytag_cli.core.tfruntime import tensorflow

    tf = tensorflow()
    from tensorflow.lite.python import lite as tflite

    phases.done("import tensorflow")
    from furrytag_cli.engines.base import named_outputs
    from furrytag_cli.model.loading import load_bundle, load_keras_model

    bundle = load_bundle(args.model, normalized=args.normalized)
    model = load_keras_model(bundle, embeddings=True)
    phases.done("load the keras model")
    size, heads = bundle.input_size, bundle.categories.head_names
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="image")

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[spec])
        def __call__(self, image):
            return named_outputs(self.model(image, training=False), heads, embeddings=True)

    serving = Serving()
    function = serving.__call__.get_concrete_function()
    phases.done("trace the serving function")
    from tensorflow.python.framework import convert_to_constants

    frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    phases.done("freeze variables into constants (also done inside convert)")
    del frozen
    converter = tflite.TFLiteConverterV2.from_concrete_functions([function], serving)
    flatbuffer = converter.convert()
    phases.done("convert (freeze + grappler + MLIR + flatbuffer)")
    result = {
        "model": str(args.model),
        "phases": phases.rows,
        "flatbuffer_mb": len(flatbuffer) >> 20,
    }
    if bundle.kind == "legacy":
        converter = tf.lite.TFLiteConverter.from_saved_model(str(bundle.path))
        with tempfile.TemporaryDirectory():
            converter.convert()
        phases.done("alternative: from_saved_model on the SavedModel itself")
        result["phases"] = phases.rows
    result["pid"] = os.getpid()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
