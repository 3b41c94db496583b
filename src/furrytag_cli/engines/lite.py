"""The LiteRT engine: a bundle converted once to a ``.tflite`` flatbuffer, run on the CPU
by the XNNPACK delegate with one thread per core.

Conversion (TensorFlow's ``TFLiteConverter``) takes seconds to a minute, so its result is
cached, in the folder the cache layout (``store/layout.py``) gives: beside the bundle, in
``<bundle folder>.lite/``, or under ``<cache home>/lite/`` when the bundle lives in
furrytag's own cache (whose unpacked files are verified against their recorded digest)
or its parent folder is not writable. A cached file is named by a hash of the bundle's content, the converter's
version and the quantization, so an edited bundle or a new TensorFlow converts afresh;
it is written atomically (``core/atomic.py``), so readers never see half a model.

The runtime is the maintained ``ai-edge-litert`` package (LiteRT); ``tf.lite.Interpreter``
is deprecated in TensorFlow 2.21 and is used only where that package is not installed.
"""

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from furrytag_cli.core.atomic import write_bytes
from furrytag_cli.core.errors import BundleError, FurrytagError
from furrytag_cli.core.machine import cpu_threads
from furrytag_cli.engines.base import Scores, named_outputs
from furrytag_cli.model.bundle import TFLITE_WEIGHTS, WEIGHTS, Bundle
from furrytag_cli.model.categories import RATING_HEAD
from furrytag_cli.model.loading import load_keras_model
from furrytag_cli.model.network import EMBEDDING

QUANTIZE = ("none", "dynamic", "float16")
SUFFIX = ".tflite"
# Bumped when the flatbuffer's layout (inputs, output names) changes.
_LAYOUT = 1
_INPUT = "image"
LOCK = ".convert.lock"
_WORK = ".work"


class LiteConversionError(FurrytagError):
    """A model could not be converted to LiteRT (e.g. it uses an op LiteRT lacks)."""


def runtime() -> str:
    """Which LiteRT runtime runs the models: "ai-edge-litert X" or "tf.lite X"."""
    try:
        from ai_edge_litert import __version__

        return f"ai-edge-litert {__version__}"
    except ImportError:
        from furrytag_cli.core.tfruntime import tensorflow

        return f"tf.lite {tensorflow().__version__}"


def converter_version() -> str:
    """Identifies the converter, part of every cache key: TensorFlow's version, read from
    its installed metadata so that running a cached conversion never imports TensorFlow."""
    for distribution in ("tensorflow", "tensorflow-cpu", "tensorflow-macos"):
        with contextlib.suppress(PackageNotFoundError):
            return f"tensorflow-{version(distribution)}"
    from furrytag_cli.core.tfruntime import tensorflow

    return f"tensorflow-{tensorflow().__version__}"


def cache_path(bundle: Bundle, quantize: str = "none", home: Path | None = None) -> Path:
    """Where the converted flatbuffer of ``bundle`` is (or will be) cached; ``home`` is
    the cache home (the ``--cache-dir`` value)."""
    from furrytag_cli.store.layout import conversion_dir, file_sha256

    # Only the weights and the input size shape the flatbuffer: new thresholds or tags
    # in a native bundle's metadata keep its conversion.
    weights = (
        file_sha256(bundle.path / WEIGHTS) if bundle.kind == "native" else bundle.fingerprint()
    )
    key = hashlib.sha256(
        f"{weights}|{bundle.input_size}|{converter_version()}|{quantize}|{_LAYOUT}".encode()
    ).hexdigest()[:16]
    return conversion_dir(bundle.path, ".lite", home) / f"{quantize}-{key}{SUFFIX}"


def convert(bundle: Bundle, quantize: str = "none", workdir: Path | None = None) -> bytes:
    """Convert ``bundle`` to a LiteRT flatbuffer with one input ``image`` (N, S, S, 3) and
    outputs named by head, ``rating`` and ``embedding``; the batch size is dynamic.
    Intermediate files go to a temporary folder in ``workdir`` (default: the system's)."""
    from furrytag_cli.core.tfruntime import tensorflow

    tf = tensorflow()
    model = load_keras_model(bundle, embeddings=True)
    try:
        with _quiet(), tempfile.TemporaryDirectory(prefix=".", suffix=_WORK, dir=workdir) as tmp:
            converter = _converter(tf, bundle, model, Path(tmp))
            if quantize != "none":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
            return converter.convert()
    except Exception as exc:
        raise LiteConversionError(
            f"cannot convert {bundle.name!r} for the lite engine: {_reason(exc)}"
        ) from exc


def _converter(tf, bundle: Bundle, model, tmp: Path):
    size = bundle.input_size
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name=_INPUT)
    if bundle.kind == "native":
        # Keras 3 variables are only frozen into constants through an exported SavedModel.
        model.export(
            str(tmp / "saved"), format="tf_saved_model", verbose=False, input_signature=[spec]
        )
        return tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved"))
    heads = bundle.categories.head_names

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[spec])
        def __call__(self, image):
            return named_outputs(self.model(image, training=False), heads, embeddings=True)

    serving = Serving()
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [serving.__call__.get_concrete_function()], serving
    )


def _reason(exc: Exception) -> str:
    """The converter's own error line (its messages are long MLIR dumps)."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:200]
    return lines[0][:200]


@contextlib.contextmanager
def _quiet():
    """Hide the converter's and runtime's start-up chatter unless FURRYTAG_DEBUG is set."""
    from furrytag_cli.core.tfruntime import _stderr_silenced

    with (
        _stderr_silenced(not os.environ.get("FURRYTAG_DEBUG")),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


def _runner(model: Path | bytes, threads: int):
    """A signature runner for a flatbuffer file, or for its bytes."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from furrytag_cli.core.tfruntime import tensorflow

        Interpreter = tensorflow().lite.Interpreter
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    with _quiet():
        return Interpreter(**source, num_threads=threads).get_signature_runner()


def open_runner(model: Path | bytes, bundle: Bundle, threads: int):
    """A signature runner for a converted ``bundle``, or None when it is unreadable or stale."""
    try:
        runner = _runner(model, threads)
        outputs = runner.get_output_details()
    except (ValueError, RuntimeError, KeyError):
        return None
    widths = {h: len(t) for h, t in bundle.categories.heads.items()}
    widths[RATING_HEAD] = 1
    if (
        list(runner.get_input_details()) != [_INPUT]
        or any(h not in outputs or int(outputs[h]["shape"][-1]) != w for h, w in widths.items())
        or EMBEDDING not in outputs
    ):
        return None
    return runner


def convert_cached(
    bundle: Bundle,
    quantize: str,
    target: Path,
    *,
    valid: Callable[[Path], bool],
    wait: bool = True,
    notify: Callable[[str], None] | None = None,
) -> tuple[Path | bytes, bool]:
    """Convert ``bundle`` into ``target`` unless a ``valid`` conversion is there already;
    return the model (its path, or its bytes when it cannot be cached) and whether this
    call converted it.

    One process converts into a folder at a time, holding its lock file: a second one
    waits and then finds the result (or, without ``wait``, raises ``filelock.Timeout``
    at once). A conversion killed halfway leaves only temporary files, which the next
    holder of the lock removes; readers only ever see whole files.
    """
    from filelock import FileLock

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(target.parent / LOCK, timeout=-1 if wait else 0)
        lock.acquire()
    except OSError as exc:
        _cannot_cache(notify, target, exc)
        return convert(bundle, quantize), True
    try:
        if target.is_file() and valid(target):
            return target, False
        for leftover in target.parent.glob(".*"):
            if leftover.name != LOCK and leftover.name.endswith((".tmp", _WORK)):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        model = convert(bundle, quantize, workdir=target.parent)
        try:
            _store(target, model)
        except OSError as exc:
            _cannot_cache(notify, target, exc)
            return model, True
        return target, True
    finally:
        lock.release()


def _cannot_cache(notify: Callable[[str], None] | None, target: Path, exc: OSError) -> None:
    # Tagging still works; only the next run converts again.
    if notify is not None:
        notify(
            f"cannot cache the converted model in {target.parent} "
            f"({exc.strerror or exc}); each run will convert it again"
        )


def _store(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(target, data)
    # Older conversions of this bundle (same quantization) are stale now.
    prefix = target.name.split("-", 1)[0] + "-"
    for old in target.parent.glob(f"{prefix}*{SUFFIX}"):
        if old != target:
            old.unlink(missing_ok=True)


class LiteEngine:
    """Runs a bundle through LiteRT on the CPU (XNNPACK, one thread per core, batched)."""

    name = "lite"
    device = "cpu"

    def __init__(
        self,
        bundle: Bundle,
        *,
        embeddings: bool = False,
        quantize: str = "none",
        threads: int | None = None,
        notify: Callable[[str], None] | None = None,
        home: Path | None = None,
        convert: bool = True,
    ):
        if quantize not in QUANTIZE:
            raise FurrytagError(
                f"quantize must be one of {', '.join(QUANTIZE)}; received {quantize!r}"
            )
        self.bundle = bundle
        self.embeddings = embeddings
        self.quantize = quantize
        self.threads = threads or cpu_threads()
        self._heads = bundle.categories.head_names
        exported = bundle.kind == "native" and bundle.weights == TFLITE_WEIGHTS
        self.model_path = (
            bundle.path / TFLITE_WEIGHTS if exported else cache_path(bundle, quantize, home)
        )
        self.converted = False
        runner = self._open(self.model_path) if self.model_path.is_file() else None
        if runner is None and exported:
            raise BundleError(
                f"{self.model_path} is not in furrytag's layout (one input {_INPUT!r}, an output "
                "per head, 'rating' and 'embedding'); re-export it with furrytag export"
            )
        if runner is None and not convert:
            raise FileNotFoundError(self.model_path)
        if runner is None:
            if notify is not None:
                notify(
                    f"converting {bundle.name!r} for the lite engine (once; cached in "
                    f"{self.model_path.parent})"
                )
            model, self.converted = convert_cached(
                bundle,
                quantize,
                self.model_path,
                valid=lambda path: self._open(path) is not None,
                notify=notify,
            )
            self._content = model  # the runner reads the flatbuffer's bytes in place: keep them
            runner = self._open(model)
            if runner is None:
                raise BundleError(
                    f"the converted model {self.model_path} does not match {bundle.name!r}"
                )
        self._runner = runner
        self._first = True

    @classmethod
    def cached(cls, bundle: Bundle, **options) -> "LiteEngine | None":
        """The engine when its conversion is cached and sound, else None (never converts)."""
        try:
            return cls(bundle, convert=False, **options)
        except FileNotFoundError:
            return None

    def _open(self, model: Path | bytes):
        return open_runner(model, self.bundle, self.threads)

    def __call__(self, batch) -> Scores:
        images = np.asarray(batch, dtype=np.float32)
        if self._first:
            # XNNPACK is applied, and announces itself on stderr, at the first run.
            with _quiet():
                outputs = self._runner(**{_INPUT: images})
            self._first = False
        else:
            outputs = self._runner(**{_INPUT: images})
        return Scores.from_named(outputs, self._heads, embeddings=self.embeddings)
