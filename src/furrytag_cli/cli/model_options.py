"""Options about the model that several commands share."""

from pathlib import Path
from typing import Annotated

import typer

Normalized = Annotated[
    bool | None,
    typer.Option(
        "--normalized/--not-normalized",
        help="Legacy SavedModels: how the model was trained: on (x/255 - 0.5)/0.225 "
        "(--normalized, as the original project's EfficientNet and ConvNeXt models) or on "
        "x/255 (--not-normalized, as its MobileNet). Known models need neither.",
        show_default=False,
    ),
]
CacheDir = Annotated[Path | None, typer.Option(help="Model cache folder.")]
