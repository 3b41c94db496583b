"""Names of the dataset layout: splits, still formats, image folders, the default image
server and User-Agent. Import-light, so the CLI can show them in its help without loading
the dataset code."""

from furrytag_cli import __version__

SPLITS: tuple[str, ...] = ("train", "val", "test")
STILL_FORMATS: tuple[str, ...] = ("jpg", "png", "webp")
E621_BASE_URL = "https://static1.e621.net"
IMAGES = "images"
SAMPLES = "samples"
DEFAULT_USER_AGENT = f"furrytag/{__version__} (e621 dataset fetcher)"
