"""One-line notices on stderr, the way every part of furrytag speaks outside progress bars."""

import sys


def notice(message: str) -> None:
    """Print a one-line notice on stderr (the default ``notify`` of engines)."""
    print(f"furrytag: {message}", file=sys.stderr, flush=True)
