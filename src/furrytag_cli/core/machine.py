"""What this machine offers a process: its usable CPU cores."""

import os

THREADS_VARIABLE = "FURRYTAG_THREADS"


def cpu_threads() -> int:
    """The cores this process may run on, at most ``FURRYTAG_THREADS`` when that is set
    (a Ray run sets it to each decoding task's and model worker's share of the CPUs)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    cap = os.environ.get(THREADS_VARIABLE, "")
    return max(1, min(cores, int(cap))) if cap.isdigit() else cores
