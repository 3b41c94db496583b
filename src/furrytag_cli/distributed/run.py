"""One whole run on Ray: list the images, skip what complete shards hold, stream the rest
through decoding tasks and model workers, write shards as results arrive.

The driver (this process) lists the inputs and writes the shards; Ray Data streams the
images: decoding tasks on CPUs feed a pool of model workers. A worker that dies is
replaced and its block run again by Ray Data; results reach the driver once per block,
so every image is written exactly once. Memory is bounded by the blocks in flight and
one shard's rows, whatever the number of images.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.core.errors import FurrytagError
from furrytag_cli.core.machine import THREADS_VARIABLE
from furrytag_cli.distributed.runtime import cluster, require_ray
from furrytag_cli.distributed.shards import Place, ShardFolder, result_schema
from furrytag_cli.distributed.sources import Listing, list_images
from furrytag_cli.engines.background import ENV as BACKGROUND_CONVERSION
from furrytag_cli.tagging.decode import MAX_PIXELS
from furrytag_cli.tagging.predict import TagOptions

DEFAULT_SHARD_ROWS = 10_000
# A decoding task's process, besides its block's inputs: a Ray worker holds 127 MiB
# before decoding, and decoding a 24 MP PNG (at full resolution, as any non-JPEG)
# peaks 357 MiB above that; a 24 MP JPEG, decoded at a reduced scale, far less
# (scripts/decoder_memory.py: 479 MiB for 4 PNGs, 240 MiB for 32 JPEGs, at 300 px).
_DECODER_MEMORY = 512 * 1024**2


@dataclass
class RaySummary:
    """What a Ray run did."""

    folder: Place
    total: int = 0
    tagged: int = 0
    skipped: int = 0
    failed: int = 0
    shards: list[Place] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    model_id: str = ""


@dataclass(frozen=True)
class RaySettings:
    """How the work is spread: model workers and what each holds, images per batch."""

    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 32
    shard_rows: int = DEFAULT_SHARD_ROWS

    def check(self) -> None:
        if self.workers < 1:
            raise FurrytagError(f"--workers must be at least 1; received {self.workers}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker < 0:
            raise FurrytagError(
                "--gpus-per-worker and --cpus-per-worker cannot be negative; received "
                f"{self.gpus_per_worker} and {self.cpus_per_worker}"
            )
        if self.batch_size < 1:
            raise FurrytagError(f"--batch-size must be at least 1; received {self.batch_size}")
        if self.shard_rows < 1:
            raise FurrytagError(f"--shard-rows must be at least 1; received {self.shard_rows}")


@dataclass(frozen=True)
class RayJob:
    """What a Ray run tags with, and how: the options of ``furrytag tag --ray``.

    ``model`` is a registry name or a bundle path every node sees; ``options`` turn
    scores into tags (every score is written); ``fmt`` is "parquet" or "jsonl";
    ``address`` names the cluster to join; ``resume`` skips the images of complete
    shards, ``overwrite`` replaces them; ``engine``, ``device`` and ``quantize`` are as
    for ``furrytag tag``; ``home`` is the cache home; ``recursive``, ``globs``,
    ``excludes`` and ``null_separated`` say which files of the inputs are tagged.
    """

    model: str | Path | None = None
    options: TagOptions = TagOptions()
    fmt: str = "parquet"
    settings: RaySettings = RaySettings()
    address: str | None = None
    resume: bool = False
    overwrite: bool = False
    engine: str = "auto"
    device: str = "auto"
    quantize: str = "none"
    home: Path | None = None
    offline: bool = False
    recursive: bool = True
    globs: Sequence[str] = ()
    excludes: Sequence[str] = ()
    null_separated: bool = False
    max_pixels: int = MAX_PIXELS


def tag_on_ray(inputs: Sequence[str | Path], output: str | Path, **job) -> Place:
    """Tag ``inputs`` (local files and folders every node sees, or ``s3://``/``gs://``
    URIs) on Ray into the folder ``output`` (a local path, or an object-store URI); return
    that folder. The keywords are
    ``RayJob``'s fields (``model=``, ``settings=``, ``resume=``, …).

    Uses the cluster this process joined with ``ray.init`` when there is one, else the one
    at ``address`` (or ``RAY_ADDRESS``), else a cluster started on this machine for the run.
    """
    return run_on_ray(inputs, output, RayJob(**job)).folder


def run_on_ray(
    inputs: Sequence[str | Path],
    output: str | Path,
    job: RayJob = RayJob(),
    *,
    on_shard: Callable[[RaySummary], None] = lambda summary: None,
) -> RaySummary:
    """``tag_on_ray`` with ``on_shard`` called with the summary so far after each shard
    is written; returns the summary."""
    from furrytag_cli.tagging.predict import Predictor
    from furrytag_cli.tagging.tagger import resolve_bundle

    require_ray()
    job.settings.check()
    inputs = [str(i) for i in inputs]
    model = None if job.model is None else str(job.model)
    folder = ShardFolder(output, job.fmt)
    options = dataclasses.replace(job.options, all_scores=True)
    bundle = resolve_bundle(model, home=job.home, offline=job.offline)
    predictor = Predictor(bundle, options)  # checks the options before any work starts
    listing = list_images(
        inputs,
        recursive=job.recursive,
        globs=job.globs,
        excludes=job.excludes,
        null_separated=job.null_separated,
    )
    if not len(listing) and not listing.problems:
        raise FurrytagError(
            f"no images found in {', '.join(inputs)} (looked for .jpg .jpeg .png .gif .webp .bmp)"
        )
    summary = RaySummary(folder=folder.root, total=len(listing), problems=listing.problems)
    summary.model_id = bundle.model_id
    with folder.lock():
        folder.prepare(resume=job.resume, overwrite=job.overwrite)
        pending = _pending(listing, folder, bundle.model_id) if job.resume else listing
        summary.skipped = len(listing) - len(pending)
        start = time.perf_counter()
        if len(pending):
            schema = result_schema(predictor.tags)
            on_cpu = job.settings.gpus_per_worker == 0 and job.device == "auto"
            worker_args = dict(
                # A bundle path, made absolute: workers do not share this current folder.
                model=str(Path(model).resolve()) if model and Path(model).exists() else model,
                model_id=bundle.model_id,
                options=options,
                engine=job.engine,
                device="cpu" if on_cpu else job.device,
                quantize=job.quantize,
                home=job.home,
                offline=job.offline,
            )
            with cluster(job.address):
                dataset = _dataset(pending, bundle.preprocess, job, worker_args)
                _write(dataset, folder, schema, job.settings.shard_rows, summary, on_shard)
        summary.seconds = time.perf_counter() - start
    return summary


def _pending(listing: Listing, folder: ShardFolder, model_id: str) -> Listing:
    done, failed = folder.done(model_id)
    return listing.keep(
        [
            i
            for i, path in enumerate(listing.path)
            if path not in failed
            and (path, listing.size[i], listing.mtime[i], model_id) not in done
        ]
    )


def _dataset(listing: Listing, spec, job: RayJob, worker_args: dict):
    """The lazy Ray Data pipeline: rows → decoding tasks → model workers."""
    import pyarrow as pa
    import ray.data

    from furrytag_cli.distributed.stages import ModelWorker, decode_block

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    settings = job.settings
    rows = settings.batch_size
    blocks = [
        pa.table(
            {
                "path": listing.path[i : i + rows],
                "location": pa.array(listing.location[i : i + rows], pa.binary()),
                "size": pa.array(listing.size[i : i + rows], pa.int64()),
                "mtime": pa.array(listing.mtime[i : i + rows], pa.float64()),
            }
        )
        for i in range(0, len(listing), rows)
    ]
    return (
        ray.data.from_arrow(blocks)
        .map_batches(
            decode_block,
            batch_size=rows,
            batch_format="numpy",
            fn_kwargs={"spec": spec, "max_pixels": job.max_pixels},
            num_cpus=1,
            runtime_env=_threads(1),
            # The process decoding its largest image, and the block's model inputs. Model
            # workers ask for no memory, which also keeps Ray Data from fusing decoding
            # into them.
            memory=_DECODER_MEMORY + rows * spec.size**2 * 3 * 4 * 2,
        )
        .map_batches(
            ModelWorker,
            batch_size=rows,
            batch_format="numpy",
            fn_constructor_kwargs=worker_args,
            compute=ray.data.ActorPoolStrategy(size=settings.workers),
            num_cpus=settings.cpus_per_worker,
            num_gpus=settings.gpus_per_worker,
            runtime_env=_model_worker_env(settings.cpus_per_worker),
        )
    )


def _threads(cpus: float) -> dict:
    """Each stage's processes use as many threads as the CPUs they hold (at least one):
    decoding and the model then share a node's cores instead of crowding them."""
    return {"env_vars": {THREADS_VARIABLE: str(max(1, round(cpus)))}}


def _model_worker_env(cpus: float) -> dict:
    """A model worker lives for the whole run, so a model not yet converted for LiteRT is
    converted in it before its first batch: a detached converter would outlive the worker,
    and a worker moving from keras to lite mid-run would score its batches with two engines."""
    env = _threads(cpus)
    env["env_vars"][BACKGROUND_CONVERSION] = "0"
    return env


def _write(dataset, folder: ShardFolder, schema, shard_rows: int, summary, on_shard) -> None:
    def flush() -> None:
        tagged, failed, written = folder.flush()
        summary.tagged += tagged
        summary.failed += failed
        summary.shards.extend(written)
        on_shard(summary)

    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        records, failures = [], []
        for path, record, reason in zip(batch["path"], batch["record"], batch["reason"]):
            if reason:
                failures.append({"path": str(path), "reason": str(reason)})
            else:
                records.append(str(record))
        folder.add(records, failures, schema)
        if folder.held >= shard_rows:
            flush()
    if folder.held:
        flush()
