"""Where the data files shipped with furrytag live (categories/, configs/).

In a wheel they sit inside the package (``furrytag_cli/data``); in a source checkout
(editable install) they are the repository's top-level folders.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
_PACKAGE_DATA = _PACKAGE / "data"
_CHECKOUT_ROOT = _PACKAGE.parents[1]


def data_dir(name: str) -> Path:
    """Return the folder of shipped data called ``name`` ("categories" or "configs")."""
    for root in (_PACKAGE_DATA, _CHECKOUT_ROOT):
        candidate = root / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"furrytag's data folder {name!r} is missing from {_PACKAGE_DATA} and "
        f"{_CHECKOUT_ROOT}; reinstall furrytag"
    )
