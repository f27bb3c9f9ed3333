"""CLI start-up: wall time of real `python -m bot ...` runs beside the interpreter's own floors.

Each command a user (and ~20 process tests) runs — `--help`, `check-config`, `scan --input`, `score --input` — is run
`--runs` times as a real child process, round-robin with two floors run the same way: `python -c pass` (the
interpreter) and `python -c "import httpx"` (one well-kept library). Medians of wall time and of CPU time (user +
system, the child's rusage), and each command's ratio to the `import httpx` floor. The environment is passed on as it
is: with PYTHONDONTWRITEBYTECODE=1 (as on the team's machines) our own modules are compiled on every start, which is
part of what a user waits for.

`--root` runs another checkout's `bot/` (the child's working directory; `python -m` imports from there), e.g. the
code before a change: `git archive main | tar -x -C /tmp/before && python bench/cli_startup.py --root /tmp/before`.

Run: python bench/cli_startup.py [--runs 15] [--root PATH]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, banner, median, result

SEED_ROWS = "tests/data/seed_rows.json"
FLOORS = {"python -c pass": ["-c", "pass"], 'python -c "import httpx"': ["-c", "import httpx"]}
COMMANDS = {
    "--help": ["--help"],
    "check-config": ["check-config"],
    "scan --input": ["scan", "--input", SEED_ROWS],
    "score --input": ["score", "BTCUSDT", "--input", SEED_ROWS],
}
TARGET_X_FLOOR = 2.0     # a command starts within twice the time Python takes to import httpx


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one child run; a failing command stops the benchmark (its figures would mean nothing)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"`python {' '.join(argv)}` exited {proc.returncode}:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose bot/ is run (default: this one)")
    a = p.parse_args()
    root = a.root.resolve()

    banner(f"cli_startup: python -m bot <command> from {root}, {a.runs} runs each, round-robin with the floors")
    print(f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}; {sys.executable}")
    cases = {name: argv for name, argv in FLOORS.items()}
    cases |= {f"python -m bot {name}": ["-m", "bot", *argv] for name, argv in COMMANDS.items()}
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for name, argv in cases.items():          # one untimed run each: the file cache warm for every case alike
        timed(argv, root)
    for _ in range(a.runs):
        for name, argv in cases.items():
            wall, cpu = timed(argv, root)
            walls[name].append(wall)
            cpus[name].append(cpu)

    floor = median(walls['python -c "import httpx"'])
    print(f"\n{'case':44} {'wall ms':>9} {'cpu ms':>8} {'x import httpx':>15}")
    for name in cases:
        w, c = median(walls[name]) * 1000, median(cpus[name]) * 1000
        print(f"{name:44} {w:9.1f} {c:8.1f} {w / 1000 / floor:14.2f}x")
    print(f"(medians of {a.runs} runs; ratio = wall / wall of `python -c \"import httpx\"`, measured in the same "
          f"round-robin; target <= {TARGET_X_FLOOR:g}x)")
    print(f"reproduce: python bench/cli_startup.py --runs {a.runs}" + ("" if root == ROOT else f" --root {root}"))
    for name in FLOORS:
        result("cli_start", f"floor: {name}", median(walls[name]) * 1000, 0, "ms")
    for name in COMMANDS:
        result("cli_start", f"{name} (wall)", median(walls[f"python -m bot {name}"]) * 1000, 0, "ms")
        result("cli_start", f"{name} / import-httpx floor", median(walls[f"python -m bot {name}"]) / floor,
               TARGET_X_FLOOR, "x")


if __name__ == "__main__":
    main()
