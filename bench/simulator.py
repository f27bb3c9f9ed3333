"""The simulated exchange's own cost (bot/demo_market), this tree against a baseline commit, side by side.

The simulator runs in-process in many tests and in the demo, so its CPU is test time. Measured on a fresh
MarketSimulator per run (as each test makes its own), seed 7, 300 symbols, a fixed start:

* force_orders for 24 consecutive hours of BTCUSDT (as the force-order stream computes them, an hour at a time);
* klines: 5m limit 500 and 1h limit 500 for 10 symbols;
* ticker/24hr for the full universe at 10 consecutive minutes (as scoring cycles ask);
* openInterestHist 5m limit 289 (the collector's 24-hour backfill) for 30 symbols.

Each side runs in its own child process (`--child DIR`: DIR's `bot/` first on sys.path); the baseline is
BASELINE's `bot/` extracted with `git archive` (the main branch before the simulator was made cheaper). With
`--identity` both children also hash the payloads of a fixed set of requests (force orders, klines 1m/5m/1h,
openInterestHist, ticker/24hr, premiumIndex, exchangeInfo, states) and the figures say whether they are equal.

Run: python bench/simulator.py [--runs 5] [--identity] [--baseline REV]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from _common import ROOT, banner, median, result

BASELINE = "6ce5d6f776725dbe3736158a39c0e7970b60725e"   # main before the simulator's caches
START = 1_767_225_600_000                                  # 2026-01-01 00:00 UTC
HOUR = 3_600_000
CASES = ("force_orders_24h", "klines", "ticker_24hr", "oi_hist")


def _sim(n: int = 300, seed: int = 7):
    from bot.demo_market.market import MarketSimulator
    return MarketSimulator(n_symbols=n, seed=seed, start_ms=START, clock=lambda: 0.0)


def _case(name: str) -> None:
    from bot.demo_market.liquidations import force_orders
    sim = _sim()
    at = START + 6 * HOUR
    if name == "force_orders_24h":
        for h in range(24):
            force_orders(sim, "BTCUSDT", START + h * HOUR, START + (h + 1) * HOUR)
    elif name == "klines":
        for s in sim.symbols()[:10]:
            sim.klines(s, "5m", 500, at_ms=at)
            sim.klines(s, "1h", 500, at_ms=at)
    elif name == "ticker_24hr":
        for m in range(10):
            sim.ticker_24hr(at_ms=at + m * 60_000)
    elif name == "oi_hist":
        for s in sim.symbols()[:30]:
            sim.open_interest_hist(s, "5m", 289, at_ms=at)


def _payloads():
    """The requests whose answers must not change (yields (name, payload))."""
    from bot.demo_market.liquidations import ForceOrderStream, force_orders
    for n, seed in ((60, 7), (40, 11)):
        sim = _sim(n, seed)
        kick = [e.symbol for e in sim.kickoff_episodes()][:2]
        for s in ["BTCUSDT", "SOLUSDT"] + kick:
            for h in range(-2, 10):
                yield f"fo {s} {h}", force_orders(sim, s, START + h * HOUR, START + (h + 1) * HOUR)
            yield f"fo span {s}", force_orders(sim, s, START - 2 * HOUR + 12_345, START + 5 * HOUR + 999)
        stream = ForceOrderStream(sim)
        yield "stream", [stream._events(s, START + 1000, START + 8 * HOUR + 7) for s in stream.symbols]
        for at in (START, START + 37 * 60_000 + 1234, START + 5 * HOUR + 17, START + 30 * HOUR):
            yield f"ticker {at}", sim.ticker_24hr(at_ms=at)
            yield f"premium {at}", sim.premium_index(at_ms=at)
            yield f"states {at}", [repr(sim.state(s, at)) for s in sim.symbols()]
            for s in sim.symbols()[:3] + kick:
                yield f"ticker1 {s} {at}", sim.ticker_24hr(s, at_ms=at)
                yield f"oi {s} {at}", sim.open_interest(s, at_ms=at)
                for iv, lim in (("1m", 300), ("5m", 300), ("1h", 100), ("1d", 20)):
                    yield f"klines {s} {iv} {at}", sim.klines(s, iv, lim, at_ms=at)
                yield f"klines start {s} {at}", sim.klines(s, "5m", 400, start_time=at - 3 * 86_400_000, at_ms=at)
                for p, lim in (("5m", 289), ("1h", 100), ("1d", 30)):
                    yield f"oih {s} {p} {at}", sim.open_interest_hist(s, p, lim, at_ms=at)
        for s in sim.all_symbols()[-3:]:
            yield f"extra {s}", [sim.premium_index(s, at_ms=START + 100), sim.ticker_24hr(s, at_ms=START + 100),
                                 sim.klines(s, "1h", 50, at_ms=START + 100)]
        info = sim.exchange_info()
        info.pop("serverTime")
        yield "exchangeInfo", info
        yield "fundingInfo", sim.funding_info()


def child(root: str, runs: int, identity: bool) -> None:
    sys.path.insert(0, root)
    import bot.demo_market.market as m
    assert Path(m.__file__).resolve().is_relative_to(Path(root).resolve()), m.__file__
    out: dict = {}
    for name in CASES:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            _case(name)
            times.append(time.perf_counter() - t0)
        out[name] = times
    if identity:
        h = hashlib.sha256()
        count = 0
        for key, payload in _payloads():
            h.update(key.encode() + json.dumps(payload, sort_keys=True).encode())
            count += 1
        out["digest"], out["payloads"] = h.hexdigest(), count
    print(json.dumps(out))


def measure(root: Path, runs: int, identity: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), "--runs", str(runs)] + (["--identity"] if identity else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--identity", action="store_true", help="also compare the payloads' digests")
    p.add_argument("--baseline", default=BASELINE, help="git revision measured as 'before'")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child, a.runs, a.identity)
        return
    banner(f"simulator: this tree against {a.baseline[:12]} (median of 2 x {a.runs} fresh simulators each)")
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", a.baseline, "bot"], capture_output=True, cwd=ROOT)
        if archive.returncode:
            raise SystemExit(f"git archive {a.baseline} failed: {archive.stderr.decode().strip()}")
        tarfile.open(fileobj=BytesIO(archive.stdout)).extractall(tmp)
        # alternating children (before, after, before, after): a burst of load on the shared machine hits both
        rounds = [(measure(Path(tmp), a.runs, a.identity and r == 0), measure(ROOT, a.runs, a.identity and r == 0))
                  for r in range(2)]
    before = rounds[0][0] | {n: median([x for b, _ in rounds for x in b[n]]) for n in CASES}
    after = rounds[0][1] | {n: median([x for _, t in rounds for x in t[n]]) for n in CASES}
    print(f"{'case':18} {'before ms':>10} {'after ms':>10} {'speed-up':>9}")
    for name in CASES:
        b, t = before[name] * 1000, after[name] * 1000
        print(f"{name:18} {b:10.1f} {t:10.1f} {b / t:8.1f}x")
        result("simulator", f"{name} ms (before {b:.0f})", t, 0, "ms")
    if a.identity:
        same = before["digest"] == after["digest"]
        print(f"payloads: {after['payloads']} requests, sha256 before {before['digest'][:16]}… after "
              f"{after['digest'][:16]}… -> {'IDENTICAL' if same else 'DIFFERENT'}")
        result("simulator", "payloads identical (1 = yes)", 1.0 if same else 0.0, 0, "bool")


if __name__ == "__main__":
    main()
