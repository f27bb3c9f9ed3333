"""Run every benchmark in bench/ and print a summary table of the figures against their targets.

Each benchmark is a standalone script run here as a child process (`python bench/<name>.py`); its full
output is shown, and its `BENCH-RESULT {...}` lines are collected into the summary.

Run: python bench/run_all.py [--only cycle,scoring,rules,memory,freshness,alert_latency,history_size,cli_startup]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import banner, load

HERE = Path(__file__).resolve().parent
BENCHES = ("cycle", "scoring", "rules", "memory", "freshness", "alert_latency", "history_size", "cli_startup",
           "simulator")


def run(name: str) -> tuple[list[dict], float, int]:
    print(f"\n{'=' * 100}\n$ python bench/{name}.py", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(HERE / f"{name}.py")], cwd=HERE.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    results = []
    for line in proc.stdout:
        if line.startswith("BENCH-RESULT "):
            results.append(json.loads(line[len("BENCH-RESULT "):]))
        else:
            print(line, end="", flush=True)
    code = proc.wait()
    return results, time.perf_counter() - started, code


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHES))
    a = p.parse_args()
    banner("bench/run_all.py")
    rows, runs = [], []
    for name in a.only.split(","):
        results, seconds, code = run(name)
        rows += results
        runs.append((name, seconds, code))

    print(f"\n{'=' * 100}\nSUMMARY ({load()} at the end)")
    print(f"{'benchmark':9} {'metric':42} {'value':>10} {'unit':8} {'target':>8} {'ratio':>7}  status")
    for r in rows:
        target = r["target"]
        has_target = bool(target)
        status = ("ok" if r["ratio"] <= 1 else "OVER TARGET") if has_target else "(info)"
        target_s = f"{target:g}" if has_target else "-"
        ratio_s = f"{r['ratio']:.3f}" if has_target else "-"
        print(f"{r['name']:9} {r['metric']:42} {r['value']:10.3f} {r['unit']:8} {target_s:>8} {ratio_s:>7}  {status}")
    print("(ratio = value / target; <= 1.000 is within target)")
    print("scripts: " + ", ".join(f"{n} {s:.0f}s" + ("" if c == 0 else f" (EXIT {c})") for n, s, c in runs))


if __name__ == "__main__":
    main()
