"""Names of the dataset layout: splits, still formats, image folders and where a post's
images are stored, the default image server and User-Agent. Import-light, so the CLI can
show them in its help without loading the dataset code."""

from pathlib import Path

from furrytag_cli import __version__

SPLITS: tuple[str, ...] = ("train", "val", "test")
STILL_FORMATS: tuple[str, ...] = ("jpg", "png", "webp")
E621_BASE_URL = "https://static1.e621.net"
IMAGES = "images"
SAMPLES = "samples"
DEFAULT_USER_AGENT = f"furrytag/{__version__} (e621 dataset fetcher)"


def original_path(data_dir: Path, md5: str, ext: str) -> Path:
    """Where a post's original file is stored."""
    return Path(data_dir) / IMAGES / md5[0:2] / md5[2:4] / f"{md5}.{ext}"


def sample_path(data_dir: Path, md5: str) -> Path:
    """Where a post's downsized sample is stored."""
    return Path(data_dir) / SAMPLES / md5[0:2] / md5[2:4] / f"{md5}.jpg"
