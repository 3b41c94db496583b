"""Benchmark ``furrytag --help``: the median of whole-process runs, against 0.25 s.

Side by side, in one run: the Python interpreter alone, ``furrytag --help`` and
``furrytag tag --help`` (the console script, as a user types them), and ``furrytag
--help`` with Typer's rich help layout, which furrytag leaves off (``typer.rich_utils``
pulls in rich's Markdown renderer and markdown-it). ``tag --help`` takes longer than
``--help`` because Typer (0.2x) imports pydantic to read the options given before
the command.

    .venv/bin/python scripts/bench_help.py
    .venv/bin/python scripts/bench_help.py --runs 9
"""

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.25
RICH_HELP = (
    "import sys\n"
    "from furrytag_cli.cli import app\n"
    "sys.argv = ['furrytag', '--help']\n"
    "app.app.rich_markup_mode = 'rich'\n"
    "app.main()\n"
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def median_seconds(command: list[str], runs: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of ``runs`` whole-process runs."""
    subprocess.run(command, capture_output=True, check=True)  # warm the file cache
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(command, capture_output=True, check=True)
        wall.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Runs per command (default 5).")
    args = parser.parse_args()
    furrytag = str(Path(sys.executable).with_name("furrytag"))
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "furrytag --help": [furrytag, "--help"],
        "furrytag tag --help": [furrytag, "tag", "--help"],
        "furrytag --help, rich": [sys.executable, "-c", RICH_HELP],
    }
    print(f"CPU: {cpu_model()} ({platform.python_implementation()} {platform.python_version()})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"median of {args.runs} whole-process runs:      wall      CPU")
    results = {name: median_seconds(command, args.runs) for name, command in commands.items()}
    for name, (wall, cpu) in results.items():
        print(f"  {name:<26} {wall:7.3f} s {cpu:7.3f} s")
    help_s = results["furrytag --help"][0]
    verdict = "meets" if help_s <= TARGET_S else "MISSES"
    print(f"furrytag --help: {help_s:.3f} s {verdict} the {TARGET_S} s target")
    print("(on a busy machine the wall time waits for a CPU; the CPU time does not)")


if __name__ == "__main__":
    main()
