"""Shared helpers for the benchmarks in bench/ (machine banner, statistics, formatting).

Every benchmark prints figures (medians and the ratio to its target); none of them asserts. A ratio
below 1.00 means "within target". Each script ends with one machine-readable line

    BENCH-RESULT {"name": ..., "metric": ..., "value": ..., "target": ..., "unit": ..., "ratio": ...}

per measured figure; bench/run_all.py collects those lines into its summary table.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / "config" / "bot.yaml"

if str(ROOT) not in sys.path:          # `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"machine: nproc={os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), cpu={cpu}, "
            f"python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
            f"{platform.release()}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def banner(title: str) -> None:
    print(f"== {title}")
    print(machine())
    print(f"{load()} at start (the machine may be shared: timings are noisier under load)", flush=True)


def median(xs) -> float:
    return statistics.median(xs)


def ratio(value: float, target: float) -> str:
    """'0.42x target' (<= 1.00 is within target)."""
    r = value / target if target else float("inf")
    return f"{r:.3g}x target ({'ok' if r <= 1 else 'OVER'})"


def result(name: str, metric: str, value: float, target: float, unit: str) -> None:
    print("BENCH-RESULT " + json.dumps({"name": name, "metric": metric, "value": round(value, 4),
                                        "target": target, "unit": unit,
                                        "ratio": round(value / target, 3) if target else None}), flush=True)


def sim_config(url: str):
    """config/bot.yaml pointed at a simulator server, with `universe.min_quote_volume: 0` (every simulated perpetual
    is scored, so N is known)."""
    from bot.config import load_config
    cfg = load_config(CONFIG_PATH)
    return cfg.model_copy(update={
        "universe": cfg.universe.model_copy(update={"min_quote_volume": 0}),
        "exchange": cfg.exchange.model_copy(update={"base_url": url}),
    })


def httpcore_transport(cfg):
    """httpx's default (httpcore) transport, tuned as the bot's client: a keep-alive pool of max_concurrency + 4
    connections (bench/freshness.py and bench/profile_cycle.py measure the bot on it, beside its default)."""
    import httpx
    n = cfg.exchange.max_concurrency + 4
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
