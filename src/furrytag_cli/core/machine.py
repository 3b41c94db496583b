"""What this machine offers a process: its usable CPU cores, their instruction sets, and
whether it may have a GPU."""

import os
import sys
from pathlib import Path

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


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of this machine's CPU (Linux; empty where unknown)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def may_have_gpu() -> bool:
    """False when this process certainly sees no GPU TensorFlow could use (Linux without
    an NVIDIA device node, or CUDA_VISIBLE_DEVICES hiding them all), so that a model on
    the CPU need not import TensorFlow to find out; True when only TensorFlow can tell."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if sys.platform != "linux":
        return True
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists()
