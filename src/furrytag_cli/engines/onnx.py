"""The ONNX Runtime engine: bundles that hold ``model.onnx`` (``furrytag export
--format onnx``), on the CPU, or on a GPU through the CUDA provider when the installed
ONNX Runtime has it."""

import numpy as np

from furrytag_cli.core.errors import BundleError, ConfigError
from furrytag_cli.core.machine import cpu_threads
from furrytag_cli.engines.base import Scores
from furrytag_cli.model.bundle import ONNX_WEIGHTS, Bundle
from furrytag_cli.model.categories import RATING_HEAD
from furrytag_cli.model.network import EMBEDDING

_INPUT = "image"


def providers(device: str) -> list[str]:
    """ONNX Runtime's providers for ``device``: CUDA first when it is asked for and there."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device == "gpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxEngine:
    """Runs a bundle's ``model.onnx`` (furrytag's export layout) with ONNX Runtime."""

    name = "onnx"

    def __init__(
        self,
        bundle: Bundle,
        *,
        embeddings: bool = False,
        device: str = "cpu",
        threads: int | None = None,
    ):
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError(
                "the onnx engine needs ONNX Runtime: pip install 'furrytag[onnx]'"
            ) from None
        if not bundle.has(ONNX_WEIGHTS):
            raise BundleError(
                f"model {bundle.name!r} ({bundle.path}) has no {ONNX_WEIGHTS}; export one with "
                f"`furrytag export {bundle.path} -o DIR --format onnx` and tag with --model DIR"
            )
        self.bundle = bundle
        self.embeddings = embeddings
        self._heads = bundle.categories.head_names
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.log_severity_level = 3
        chosen = providers(device)
        try:
            self._session = onnxruntime.InferenceSession(
                str(bundle.path / ONNX_WEIGHTS), options, providers=chosen
            )
        except Exception as exc:
            raise BundleError(f"cannot load {bundle.path / ONNX_WEIGHTS}: {exc}") from None
        self.device = (
            "gpu" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        )
        self._outputs = [*self._heads, RATING_HEAD] + ([EMBEDDING] if embeddings else [])
        self._check()

    def _check(self) -> None:
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        widths = {h: len(t) for h, t in self.bundle.categories.heads.items()}
        widths[RATING_HEAD] = 1
        wrong = [h for h, w in widths.items() if h not in outputs or outputs[h][-1] != w]
        if inputs != [_INPUT] or wrong or EMBEDDING not in outputs:
            raise BundleError(
                f"{self.bundle.path / ONNX_WEIGHTS} is not in furrytag's layout (one input "
                f"{_INPUT!r}, an output per head of furrytag.yaml, 'rating' and 'embedding'): it "
                f"takes {inputs} and gives {sorted(outputs)}; re-export it with furrytag export"
            )

    def __call__(self, batch) -> Scores:
        images = np.asarray(batch, dtype=np.float32)
        values = self._session.run(self._outputs, {_INPUT: images})
        return Scores.from_named(
            dict(zip(self._outputs, values)), self._heads, embeddings=self.embeddings
        )
