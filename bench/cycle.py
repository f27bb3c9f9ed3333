"""Steady-state market cycle: requests per cycle (target <= N+3) and cycle time (target <= 2 s at 600 symbols).

Real BinanceClient + MarketCollector + run_cycle, configuration from config/bot.yaml with
`universe.min_quote_volume: 0` (so every simulated perpetual is scored: N is known), against the
simulator server (bench/_simserver.py) in a separate process on loopback with 50 ms injected latency
per response. The server runs in its own process so that its CPU (computing the simulated market) is
not charged to the bot, as with the real exchange.

Per universe size: warm up (backfill 24h of OI history), then measure several steady-state cycles.
The client's rate limiter budgets request weight per minute (1920/min with the default headroom); a
600-symbol cycle weighs 650, so back-to-back cycles would (correctly) be throttled after ~3 cycles.
Each measured cycle therefore uses a FRESH BinanceClient (new limiter, new connection pool) with the
same store and MarketCollector state, and the server's rate-limit accounting is reset between cycles.

Run: python bench/cycle.py [--sizes 100,300,600] [--cycles 5] [--latency-ms 50]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import tempfile
import time
from pathlib import Path

from _common import CONFIG_PATH, banner, median, ratio, result
from _simserver import SimServerProcess

from bot.config import load_config
from bot.cycle import run_cycle
from bot.exchange.binance import BinanceClient
from bot.market import HORIZONS_H, HOUR_MS, MarketCollector
from bot.store import Store

TARGET_TIME_S = 2.0          # at 600 symbols
TARGET_EXTRA_REQUESTS = 3    # requests per cycle <= N + 3


def bench_config(url: str, max_concurrency: int | None = None):
    cfg = load_config(CONFIG_PATH)
    exchange = {"base_url": url}
    if max_concurrency:
        exchange["max_concurrency"] = max_concurrency
    return cfg.model_copy(update={
        "universe": cfg.universe.model_copy(update={"min_quote_volume": 0}),
        "exchange": cfg.exchange.model_copy(update=exchange),
    })


def fmt_paths(counts: dict[str, int]) -> str:
    short = {"/fapi/v1/": "", "/futures/data/": "data/"}
    out = []
    for path, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        name = path
        for prefix, repl in short.items():
            if name.startswith(prefix):
                name = repl + name[len(prefix):]
        out.append(f"{name}={n}")
    return " ".join(out)


async def bench_size(n: int, cycles: int, latency_ms: float, max_concurrency: int | None) -> dict:
    with SimServerProcess(n, latency_ms=latency_ms) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(srv.url, max_concurrency)
        store = Store(Path(tmp) / "bench.db")
        client = BinanceClient(cfg.exchange)
        collector = MarketCollector(client, store, cfg)

        t0 = time.perf_counter()
        errors = await collector.warm_up()
        warm_s = time.perf_counter() - t0
        warm = await asyncio.to_thread(srv.counts)
        await client.aclose()
        print(f"  warm-up (backfill {cfg.history.backfill_hours}h): {warm_s:.2f}s, {sum(warm.values())} requests "
              f"({fmt_paths(warm)}), {len(errors)} failed")
        # Round-trip times of single requests (incl. the injected latency): the simulator's own share.
        client = BinanceClient(cfg.exchange)
        rtt = {}
        for name, call in (("premiumIndex", client.premium_index), ("ticker/24hr", client.ticker_24hr),
                           ("openInterest", lambda: client.open_interest(collector.universe[0]))):
            t0 = time.perf_counter()
            await call()
            rtt[name] = (time.perf_counter() - t0) * 1000
        await client.aclose()
        print("  single-request round trips (incl. latency; ticker/premiumIndex are computed by the simulator): "
              + ", ".join(f"{k} {v:.0f} ms" for k, v in rtt.items()))

        durations, walls, cpus, reqs, scored, last_counts = [], [], [], [], [], {}
        for i in range(cycles):
            client = BinanceClient(cfg.exchange)          # fresh limiter per cycle (see module doc)
            collector.client = client
            await asyncio.to_thread(srv.reset)
            t0, c0 = time.perf_counter(), time.process_time()
            out = await run_cycle(cfg, client, store, collector)     # collect + score + save
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            await client.aclose()
            counts = await asyncio.to_thread(srv.counts)
            durations.append(out.duration_s)
            reqs.append(sum(counts.values()))
            scored.append(len(out.results))
            last_counts = counts
            print(f"  cycle {i + 1}: {out.duration_s:.3f}s collect+score ({walls[-1]:.3f}s incl. save, bot CPU {cpus[-1]:.3f}s), "
                  f"{reqs[-1]} requests for {scored[-1]} scored, weight {out.weight}, "
                  f"failed {len(out.data.failed)}")
        # The hourly reference-data refresh (exchangeInfo + fundingInfo): a new collector's first cycle.
        client = BinanceClient(cfg.exchange)
        hourly = MarketCollector(client, store, cfg)
        await asyncio.to_thread(srv.reset)
        await run_cycle(cfg, client, store, hourly, save=False)
        hourly_counts = await asyncio.to_thread(srv.counts)
        await client.aclose()

        # Store-side costs inside every cycle, measured alone on the same database.
        t0 = time.perf_counter()
        cov = store.history_coverage()
        cov_ms = (time.perf_counter() - t0) * 1000
        ts = max(hi for _lo, hi in cov.values())
        t0 = time.perf_counter()
        rows = 0
        for name, h in HORIZONS_H.items():
            tol = cfg.history.tolerance_minutes.get(name, 60) * 60_000
            rows += len(store.oi_points_between(int(ts - h * HOUR_MS - tol), int(ts - h * HOUR_MS + tol)))
        win_ms = (time.perf_counter() - t0) * 1000
        store.close()
        with sqlite3.connect(Path(tmp) / "bench.db") as db:
            n_rows = db.execute("SELECT COUNT(*) FROM oi_history").fetchone()[0]

    floor = (math.ceil(n / cfg.exchange.max_concurrency) + 1) * latency_ms / 1000
    n_scored = median(scored)
    print(f"  requests/cycle by endpoint (last cycle): {fmt_paths(last_counts)}")
    print(f"  hourly-refresh cycle: {sum(hourly_counts.values())} requests ({fmt_paths(hourly_counts)})")
    print(f"  store: {n_rows} OI rows for {len(cov)} symbols; history_coverage() {cov_ms:.1f} ms, "
          f"3x oi_points_between() {win_ms:.1f} ms ({rows} rows)")
    print(f"  latency floor (ceil(N/{cfg.exchange.max_concurrency})+1 round trips x {latency_ms:g} ms): {floor:.2f}s")
    return dict(n=n, scored=n_scored, reqs=median(reqs), reqs_max=max(reqs), dur=median(durations),
                dmin=min(durations), dmax=max(durations), wall=median(walls), cpu=median(cpus),
                hourly=sum(hourly_counts.values()), floor=floor)


def sniffio_note() -> str:
    """httpcore imports sniffio on every lock/semaphore setup; a failed import is not cached (a sys.path scan)."""
    import importlib.util
    import timeit

    from httpcore._synchronization import current_async_library
    per_call = timeit.timeit(current_async_library, number=2000) / 2000 * 1e6
    present = importlib.util.find_spec("sniffio") is not None
    return (f"http client: httpx + httpcore; sniffio {'installed' if present else 'NOT installed'}: "
            f"httpcore current_async_library() {per_call:.1f} us/call")


async def main_async(sizes: list[int], cycles: int, latency_ms: float, max_concurrency: int | None) -> None:
    banner("cycle: requests and time per steady-state cycle")
    print(sniffio_note())
    print(f"setup: config {CONFIG_PATH.relative_to(CONFIG_PATH.parent.parent)} + universe.min_quote_volume=0; "
          f"simulator server in a separate process, {latency_ms:g} ms latency per response; "
          f"{cycles} cycles per size, each with a FRESH BinanceClient (limiter + connections), same store/collector")
    rows = []
    for n in sizes:
        print(f"-- {n} symbols")
        rows.append(await bench_size(n, cycles, latency_ms, max_concurrency))

    print()
    print(f"{'symbols':>7} {'scored N':>8} {'req/cycle':>9} {'N+3':>5} {'hourly':>6} {'median s':>8} "
          f"{'min s':>6} {'max s':>6} {'+save s':>7} {'CPU s':>6} {'floor s':>7}")
    for r in rows:
        print(f"{r['n']:7d} {r['scored']:8.0f} {r['reqs']:9.0f} {r['scored'] + 3:5.0f} {r['hourly']:6d} "
              f"{r['dur']:8.3f} {r['dmin']:6.3f} {r['dmax']:6.3f} {r['wall']:7.3f} {r['cpu']:6.3f} {r['floor']:7.2f}")
    print("(median/min/max s: run_cycle's duration_s = collect + score; +save s: median wall time including "
          "store.save_cycle;\n CPU s: median CPU time of the bot process per cycle (all threads); floor: the latency-bound "
          "minimum;\n hourly: requests in the cycle that also refreshes exchangeInfo + fundingInfo)")
    for r in rows:
        print(f"{r['n']} symbols: requests/cycle {r['reqs']:.0f} vs N+3 = {r['scored'] + 3:.0f}: "
              f"{ratio(r['reqs'], r['scored'] + TARGET_EXTRA_REQUESTS)}")
        result("cycle", f"requests/cycle @{r['n']} (target N+3)", r["reqs"], r["scored"] + TARGET_EXTRA_REQUESTS,
               "requests")
    for r in rows:
        if r["n"] == 600:
            print(f"600 symbols: median cycle {r['dur']:.3f}s vs 2 s: {ratio(r['dur'], TARGET_TIME_S)}")
        result("cycle", f"cycle time @{r['n']}", r["dur"], TARGET_TIME_S if r["n"] == 600 else 0, "s")
    for r in rows:
        result("cycle", f"bot CPU per cycle @{r['n']}", r["cpu"], 0, "s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,300,600")
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="what-if: override exchange.max_concurrency (default: the config's)")
    a = p.parse_args()
    asyncio.run(main_async([int(x) for x in a.sizes.split(",")], a.cycles, a.latency_ms, a.max_concurrency))


if __name__ == "__main__":
    main()
