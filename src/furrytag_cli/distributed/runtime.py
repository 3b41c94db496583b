"""Importing Ray, and joining a cluster (or starting one on this machine) for one run."""

from collections.abc import Iterator
from contextlib import contextmanager

from furrytag_cli.core.errors import FurrytagError

INSTALL = 'pip install "furrytag[ray]"'


class MissingExtraError(FurrytagError):
    """An optional part of furrytag is used without its extra installed."""


def require_ray():
    """The ``ray`` module with Ray Data, or a MissingExtraError saying what to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError(
            f"tagging on Ray needs Ray Data, which is not installed ({exc}); install it with "
            f'{INSTALL} (or pip install "ray[data]"), or tag on this machine without --ray'
        ) from None
    return ray


@contextmanager
def cluster(address: str | None) -> Iterator[None]:
    """Ray for the duration of a run.

    When this process already called ``ray.init`` that cluster is used and left running.
    Otherwise ``address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it) names the
    cluster to join; without either, a cluster is started on this machine, and shut down
    at the end.
    """
    ray = require_ray()
    if ray.is_initialized():
        if address is not None:
            raise FurrytagError(
                f"Ray is already initialised in this process, so the address {address!r} "
                "cannot be used; drop the address, or call ray.shutdown() first"
            )
        yield
        return
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        raise FurrytagError(
            f"cannot reach the Ray cluster at {address}: {exc}; check the address "
            "(ray status on the head node shows it), or omit it to run on this machine"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()
