"""The keras engine at once while a detached process converts the model for LiteRT.

A model's first conversion takes seconds to minutes. With ``--engine auto`` on a CPU,
tagging does not wait for it: the keras engine tags from the first batch while
``python -m furrytag_cli.engines.background`` converts the model in a detached process,
and at the first batch boundary after the converted file appears, the lite engine
takes over (their scores agree to 1e-4). A run that ends first leaves the conversion
to finish for the next run; the conversion folder's lock keeps two runs from
converting the same model twice, and a killed conversion leaves only temporary files
(see ``lite.convert_cached``). A conversion that fails leaves its reason in
``<model file>.failed``, and later runs use the keras engine without trying again
until the bundle or TensorFlow changes.

When: the conversion pays only when the images left after it are many: it costs what
the keras engine spends on 600–1,200 images (EfficientNetV2-B3@300 on 2 cores: 50 s at
23 img/s on an AVX-512 Xeon, 75 s at 9 img/s on an AVX2 EPYC), and the lite engine
saves a third to a half of the keras engine's time per image, so the break-even lies
near 2,000 images (``EAGER_IMAGES``). A shorter run tags with the keras engine and
starts the conversion when its last batch is done, at the lowest priority, for the next
run. A longer one converts at once where the lite engine outruns the keras engine
(not on CPUs with AVX-512, where TensorFlow's oneDNN kernels run B3 as fast as XNNPACK:
22.3 vs 22.7 img/s here, so there every first run tags with keras and converts after
it: 3,000 images took 195 s converting first, 167 s with keras only): in the
background at normal priority, the keras
engine tagging meanwhile, where the cores are many (``SPARE_CORES``: the conversion
keeps about one busy); on fewer, in the run before its first batch, since there the
two get less done side by side than one after the other (1,000 images of B3 on 2
cores: 113 s side by side, 96 s one after the other). Callers that score batches of
their own without saying how many (the ``Tagger.scores`` API) start it at once, at the
lowest priority, on what their work leaves idle.

``FURRYTAG_BACKGROUND_CONVERSION=0`` converts in the run itself, before the first batch,
for machines where no process may outlive its job (batch schedulers that reap strays).
"""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, FurrytagError
from furrytag_cli.core.machine import cpu_flags, cpu_threads
from furrytag_cli.engines.base import Scores
from furrytag_cli.engines.keras import KerasEngine
from furrytag_cli.engines.lite import LiteConversionError, LiteEngine, cache_path
from furrytag_cli.model.bundle import Bundle

EAGER_IMAGES = 2000
SPARE_CORES = 4
FAILED = ".failed"
ENV = "FURRYTAG_BACKGROUND_CONVERSION"


def enabled() -> bool:
    """Whether a first conversion may run in a background process
    (``$FURRYTAG_BACKGROUND_CONVERSION``, on unless 0)."""
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV} must be 1 (convert in the background) or 0; received {value!r}")


def failure_path(target: Path) -> Path:
    """Where a failed conversion into ``target`` leaves its reason."""
    return target.with_name(target.name + FAILED)


def start_conversion(
    bundle: Bundle, quantize: str, home: Path | None, *, eager: bool
) -> subprocess.Popen:
    """Start converting ``bundle`` in a detached process (its own process group, no
    terminal): it outlives this process and ignores Ctrl-C and hang-ups sent to it."""
    options = {
        "normalized": bundle.preprocess.mean != (0.0, 0.0, 0.0),
        "quantize": quantize,
        "home": None if home is None else str(home),
        "eager": eager,
    }
    return subprocess.Popen(
        [sys.executable, "-m", __name__, str(bundle.path), json.dumps(options)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group, so Ctrl-C at the terminal does not reach it; the same
        # session, so its lower priority counts against this run (a new session would be
        # a scheduling group of its own, sharing the cores equally whatever its nice).
        # Without a preexec function the child is spawned, not forked: a copy of this
        # process's page tables would cost a large model's run tens of milliseconds.
        process_group=0,
        close_fds=True,
    )


class InterimEngine:
    """The keras engine until the lite engine's conversion is ready, then the lite engine."""

    device = "cpu"

    def __init__(
        self,
        bundle: Bundle,
        *,
        embeddings: bool = False,
        quantize: str = "none",
        notify: Callable[[str], None] | None = None,
        home: Path | None = None,
        cores: int | None = None,
        lite_outruns_keras: bool | None = None,
    ):
        self.bundle = bundle
        self.embeddings = embeddings
        self._lite_options = {"embeddings": embeddings, "quantize": quantize, "home": home}
        self.model_path = cache_path(bundle, quantize, home)
        self._notify = notify
        self.cores = cores or cpu_threads()
        self.lite_outruns_keras = (
            "avx512f" not in cpu_flags() if lite_outruns_keras is None else lite_outruns_keras
        )
        # Loaded at the first batch it tags: a long run on few cores never needs it.
        self._keras: KerasEngine | None = None
        self._lite: LiteEngine | None = None
        self._used: list[str] = []
        self.conversion: subprocess.Popen | None = None
        self._planned = False

    @property
    def name(self) -> str:
        return ", then ".join(self._used) or "keras"

    def expect(self, images: int) -> None:
        """Plan the conversion for a run of ``images`` images (see the module's note): a
        long run, where the lite engine outruns the keras engine, converts first on fewer
        than ``SPARE_CORES`` cores, else in the background from now; any other run when
        it calls ``finish``. Only the first run it tags is announced."""
        if self._lite is not None:
            return
        failed = failure_path(self.model_path).exists()
        long = images >= EAGER_IMAGES and self.lite_outruns_keras
        if long and self.cores < SPARE_CORES and not failed:
            self._convert_here()
        else:
            self._plan(now=long)

    def _convert_here(self) -> None:
        self._planned = True
        try:
            self._lite = LiteEngine(self.bundle, notify=self._notify, **self._lite_options)
        except LiteConversionError as exc:
            failure_path(self.model_path).write_text(str(exc) + "\n", encoding="utf-8")
            if self._notify is not None:
                self._notify(f"{exc}; using the keras engine instead")

    def _plan(self, *, now: bool, eager: bool = True) -> None:
        if self._notify is not None and not self._planned:
            where = f"once; cached in {self.model_path.parent}"
            self._notify(
                f"converting {self.bundle.name!r} for the lite engine in the background "
                f"({where}); the keras engine tags meanwhile"
                if now
                else f"the keras engine tags this run; {self.bundle.name!r} is converted "
                f"for the lite engine in the background when it ends ({where})"
            )
        self._planned = True
        if now:
            self._start(eager=eager)

    def finish(self) -> None:
        """The run's last batch is done: start a conversion it left for later."""
        if self._lite is None:
            self._start(eager=False)

    def _start(self, *, eager: bool) -> None:
        # Not after a failed conversion (in this run or an earlier one): it would fail again.
        if self.conversion is None and not failure_path(self.model_path).exists():
            self.conversion = start_conversion(
                self.bundle,
                self._lite_options["quantize"],
                self._lite_options["home"],
                eager=eager,
            )

    def __call__(self, batch) -> Scores:
        if not self._planned:
            self._plan(now=True, eager=False)
        if self._lite is None and self.model_path.is_file():
            self._take_over()
        if self._lite is None:
            try:
                return self._run_keras(batch)
            except FurrytagError:
                # The keras engine cannot run this model here (grouped convolutions on a
                # CPU): the lite engine can, once converted.
                self._start(eager=True)
                if self.conversion is None:
                    raise
                self.conversion.wait()
                self._take_over()
                if self._lite is None:
                    raise
        self._using("lite")
        return self._lite(batch)

    def _run_keras(self, batch) -> Scores:
        if self._keras is None:
            self._keras = KerasEngine(self.bundle, embeddings=self.embeddings)
        self._using("keras")
        return self._keras(batch)

    def _using(self, name: str) -> None:
        if not self._used or self._used[-1] != name:
            self._used.append(name)

    def _take_over(self) -> None:
        self._lite = LiteEngine.cached(self.bundle, **self._lite_options)
        if self._lite is not None:
            self._keras = None  # its memory goes back; TensorFlow stays imported


def main(argv: list[str]) -> int:
    """The detached conversion: ``BUNDLE_PATH OPTIONS_JSON``."""
    from filelock import Timeout

    from furrytag_cli.engines.lite import convert_cached, open_runner
    from furrytag_cli.model.loading import load_bundle

    path, options = Path(argv[0]), json.loads(argv[1])
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not options["eager"]:
        os.nice(19)
    home = None if options["home"] is None else Path(options["home"])
    bundle = load_bundle(path, normalized=options["normalized"], home=home)
    target = cache_path(bundle, options["quantize"], home)
    try:
        convert_cached(
            bundle,
            options["quantize"],
            target,
            valid=lambda p: open_runner(p, bundle, cpu_threads()) is not None,
            wait=False,
        )
    except Timeout:
        return 0  # another process is converting it
    except FurrytagError as exc:
        failure_path(target).write_text(str(exc) + "\n", encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
