"""Writing an export folder: the model file in the asked format and layout, its metadata
(``furrytag.yaml``) or tag list (``selected_tags.csv``), and the model card.

The folder is written beside its target under a temporary name and renamed into place,
so an export that fails leaves nothing behind.
"""

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from furrytag_cli import __version__
from furrytag_cli.core.errors import ExportError, OutputError
from furrytag_cli.export.card import model_card
from furrytag_cli.model.bundle import (
    METADATA,
    ONNX_WEIGHTS,
    TFLITE_WEIGHTS,
    WEIGHTS,
    Bundle,
    write_metadata,
)

FORMATS = ("onnx", "tflite", "keras")
LAYOUTS = ("furrytag", "wd14")
CARD = "README.md"
_MODEL_FILE = {"onnx": ONNX_WEIGHTS, "tflite": TFLITE_WEIGHTS, "keras": WEIGHTS}


@dataclass
class Exported:
    """What an export wrote: the folder, its files with their sizes, and the seconds taken."""

    folder: Path
    sizes: dict[str, int]
    seconds: float


def check_request(bundle: Bundle, fmt: str, layout: str) -> None:
    """Refuse a format/layout combination before any work is done."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}; received {fmt!r}")
    if layout not in LAYOUTS:
        raise ExportError(f"--layout must be one of {', '.join(LAYOUTS)}; received {layout!r}")
    if layout == "wd14" and fmt != "onnx":
        raise ExportError(f"the wd14 layout is ONNX only; use --format onnx, not {fmt!r}")
    if fmt == "keras" and not bundle.has(WEIGHTS):
        what = "a legacy SavedModel" if bundle.kind == "legacy" else f"a bundle of {bundle.weights}"
        raise ExportError(
            f"{bundle.name!r} is {what}, which cannot be saved as a Keras 3 model; "
            "export it with --format onnx or --format tflite"
        )
    if bundle.kind == "native" and not bundle.has(WEIGHTS):
        raise ExportError(
            f"{bundle.name!r} ({bundle.path}) is already an export ({bundle.weights}); export "
            "from the bundle that holds model.keras, or the legacy SavedModel"
        )


def export_model(
    bundle: Bundle,
    out: Path,
    *,
    fmt: str = "onnx",
    layout: str = "furrytag",
    size: int | None = None,
    license: str | None = None,
    overwrite: bool = False,
) -> Exported:
    """Export ``bundle`` into the folder ``out`` (which must be absent or empty, or
    ``overwrite``); ``size`` is the wd14 layout's input size (default 448)."""
    from furrytag_cli.export.wd14 import DEFAULT_SIZE

    check_request(bundle, fmt, layout)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; give a folder to export into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"{out} is not empty; pass --overwrite to replace it, or pick a new folder"
        )
    size = size or DEFAULT_SIZE
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}~export-", dir=out.parent))
    try:
        # mkdtemp makes the folder private; the export is an ordinary folder.
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)
        files = _write(bundle, stage, fmt, layout, size)
        card = model_card(bundle, fmt=fmt, layout=layout, size=size, license=license, files=files)
        (stage / CARD).write_text(card, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    sizes = {f: (out / f).stat().st_size for f in [*files, CARD]}
    return Exported(folder=out, sizes=sizes, seconds=time.perf_counter() - started)


def _write(bundle: Bundle, stage: Path, fmt: str, layout: str, size: int) -> list[str]:
    """Write the model files into ``stage``; return their names."""
    model_file = _MODEL_FILE[fmt]
    if layout == "wd14":
        from furrytag_cli.export.onnx import to_onnx
        from furrytag_cli.export.wd14 import TAGS_FILE, selected_tags_csv, wd14_model

        (stage / model_file).write_bytes(
            wd14_model(to_onnx(bundle), bundle, size).SerializeToString()
        )
        (stage / TAGS_FILE).write_text(selected_tags_csv(bundle), encoding="utf-8")
        return [model_file, TAGS_FILE]
    if fmt == "onnx":
        from furrytag_cli.export.onnx import to_onnx

        (stage / model_file).write_bytes(to_onnx(bundle).SerializeToString())
    elif fmt == "tflite":
        from furrytag_cli.engines.lite import convert

        (stage / model_file).write_bytes(convert(bundle))
    else:
        shutil.copyfile(bundle.path / WEIGHTS, stage / model_file)
    provenance = {
        **dict(bundle.provenance),
        "exported_from": bundle.model_id,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exported_by": f"furrytag {__version__}",
    }
    write_metadata(
        dataclasses.replace(
            bundle, path=stage, kind="native", weights=model_file, provenance=provenance
        )
    )
    return [model_file, METADATA]
