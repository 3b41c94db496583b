"""``furrytag train``: train a multi-head tagger from a config and export a bundle."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from furrytag_cli.cli.conventions import either
from furrytag_cli.core.errors import Interrupted


def train_command(
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Training config: a YAML file or a shipped config name "
            "(tiny, mobilenet_v3_224, efficientnet_v2_b3_300, convnext_tiny_224, efficientnet_v2_m_384).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Packed dataset: its folder or its shards folder (default: data.path).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run folder to create.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config value, e.g. --set optimizer.lr=3e-4; repeatable."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue the run in this folder from its latest checkpoint."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the final summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    out: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
) -> None:
    """Train a model on TFRecord shards; write checkpoints, logs and RUN_DIR/bundle.

    The tf.distribute strategy comes from the environment: TPUStrategy on a TPU,
    MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, MirroredStrategy over
    several GPUs, else the default one. The batch size in the config is per replica.
    """
    # TensorFlow loads only when training starts, so --help stays fast.
    from furrytag_cli.training.trainer import train

    out = either(output, out, "--output", "--out")

    def note(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    verbose = 0 if quiet else 1 if sys.stderr.isatty() else 2
    try:
        result = train(
            config,
            data=data,
            out=out,
            overrides=overrides or (),
            resume=resume,
            verbose=verbose,
            note=note,
        )
    except KeyboardInterrupt:
        raise Interrupted(
            f"training stopped; continue it from its latest checkpoint with "
            f"furrytag train --resume {resume or out}"
        ) from None
    state = result.state
    if as_json:
        summary = {
            "run": str(result.run_dir),
            "epochs": state.epoch,
            "steps": state.global_step,
            "best_epoch": state.best_epoch,
            "bundle": str(result.bundle.path) if result.bundle is not None else None,
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    best = f"best epoch {state.best_epoch}" if state.best_epoch else "no best epoch"
    if result.bundle is None:
        typer.echo(
            f"Trained {state.epoch} epoch(s), {state.global_step} steps; this worker "
            "is not the chief, so the chief writes the bundle"
        )
        return
    typer.echo(
        f"Trained {state.epoch} epoch(s), {state.global_step} steps ({best}); "
        f"bundle: {result.bundle.path}"
    )
    typer.echo(f"Tag with: furrytag tag --model {result.bundle.path} IMAGES...")
