"""Proof that no test outcome depends on the hour, the day or the machine's load.

Reruns the timing-sensitive tests (marker ``process``: the bot as real processes against the simulator,
the 30-second demo among them) once per start hour across a day. Each run shifts the simulated market's
start (``--sim-start``) and, when Debian's ``faketime`` is installed, the wall clock every process sees
(hour of day and day of week), while busy-loop processes keep the CPUs loaded. Prints one line per run
and every failure; exits 1 if any run failed.

    python tests/timing_matrix.py                      # 24 start hours, 2 busy loops
    python tests/timing_matrix.py --hours 0,7,23 --load 1 -- -k demo
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import DEFAULT_SIM_START  # noqa: E402

BUSY_LOOP = "while True: pass"


def hours(text: str) -> list[int]:
    return list(range(int(text))) if "," not in text and int(text) > 1 else [int(h) for h in text.split(",")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=hours, default=list(range(24)),
                   help="how many start hours (N = 0..N-1) or a comma list (default 24)")
    p.add_argument("--load", type=int, default=2, help="busy-loop processes alongside (default 2)")
    p.add_argument("--no-faketime", action="store_true", help="shift only the simulated start")
    p.add_argument("--keep-logs", metavar="DIR", help="write each failing run's full output here")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    a = p.parse_args()

    faketime = None if a.no_faketime else shutil.which("faketime")
    if not faketime and not a.no_faketime:
        print("faketime not installed (apt-get install faketime): shifting the simulated start only")
    base = datetime.fromisoformat(DEFAULT_SIM_START.replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(a.load)]
    failures: list[str] = []
    try:
        for h in a.hours:
            start = base + timedelta(hours=h)
            cmd = [sys.executable, "-m", "pytest", "-q", "-m", "process", "-p", "no:cacheprovider",
                   f"--sim-start={start.isoformat()}", *a.pytest_args]
            wall = "real clock"
            if faketime:
                # the wall clock at this start's hour of day, on a different weekday each hour
                target = now.replace(hour=h) + timedelta(days=h % 7)
                offset_s = int((target - now).total_seconds())
                cmd = [faketime, "-f", f"{offset_s:+d}s", *cmd]
                wall = f"wall clock {target:%a %H:%M} UTC"
            t0 = time.monotonic()
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
            summary = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
            ok = out.returncode == 0
            print(f"start {start:%Y-%m-%d %H:%M}Z, {wall}, load {a.load}: {'PASS' if ok else 'FAIL'} "
                  f"({summary}; {time.monotonic() - t0:.0f}s)", flush=True)
            if not ok:
                failed = [ln for ln in out.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
                failures.append(f"start hour {h}: " + ("; ".join(failed) or out.stdout[-1500:] + out.stderr[-1500:]))
                print("  " + failures[-1], flush=True)
                if a.keep_logs:
                    log = Path(a.keep_logs) / f"hour-{h:02d}.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    log.write_text(out.stdout + "\n--- stderr ---\n" + out.stderr)
                    print(f"  full output: {log}", flush=True)
    finally:
        for proc in load:
            proc.kill()
    print(f"\n{len(a.hours) - len(failures)}/{len(a.hours)} runs passed")
    for f in failures:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
