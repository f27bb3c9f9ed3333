"""Freshness at a measured cost, as ratios measured side by side in one run (absolute times drift between machines).

1. cycle wall time / latency floor: a steady-state 600-symbol cycle (the real BinanceClient + MarketCollector +
   run_cycle, default configuration, every simulated perpetual scored) against the simulator server in its own
   process with 50 ms injected per response; the floor is ceil(N / C) * RTT, N the requests, C
   `exchange.max_concurrency` (target <= 1.2).
2. CPU per request: the bot's CPU time for that whole cycle (fetch, parse, score, store) per request, over the CPU
   per request of a bare httpx client fetching the same 600 openInterest URLs from the same server with the same
   concurrency and decoding the JSON (target <= 1.5). The two alternate, medians of `--rounds`. The bot's cycle runs
   on each of two transports behind the same httpx.AsyncClient: httpx-aiohttp's AiohttpTransport (the default) and
   httpx's own httpcore transport, tuned the same (shared client, keep-alive pool, limits), side by side.
3. weight budget: the steady cycle's request weight per minute at the default cadence, as a share of the IP's
   2,400/min (target <= 35 %).

Run: python bench/freshness.py [--symbols 600] [--rounds 5] [--latency-ms 50]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from pathlib import Path

import httpx

from _common import banner, httpcore_transport, median, ratio, result, sim_config
from _simserver import SimServerProcess

from bot.cycle import run_cycle
from bot.exchange.binance import BinanceClient
from bot.market import MarketCollector
from bot.store import Store

TARGET_FLOOR_RATIO = 1.2
TARGET_CPU_RATIO = 1.5
TARGET_WEIGHT_SHARE = 0.35


async def bare_httpx(url: str, symbols: list[str], concurrency: int) -> tuple[float, float, int]:
    """(wall s, CPU s, requests): the same openInterest URLs, one httpx client, `concurrency` in flight."""
    sem = asyncio.Semaphore(concurrency)
    t0, c0 = time.perf_counter(), time.process_time()
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def one(sym: str) -> None:
            async with sem:
                (await client.get("/fapi/v1/openInterest", params={"symbol": sym})).json()
        await asyncio.gather(*(one(s) for s in symbols))
    return time.perf_counter() - t0, time.process_time() - c0, len(symbols)


async def bot_cycle(cfg, store, collector, transport=None) -> tuple[float, float, int, int]:
    """(wall s, CPU s, requests, weight) of one steady cycle, client made (and closed) inside, as the bench's
    reference does for httpx. `transport`: a factory of the httpx transport (None: the client's default)."""
    t0, c0 = time.perf_counter(), time.process_time()
    client = BinanceClient(cfg.exchange, transport=transport(cfg) if transport else None)
    collector.client = client
    out = await run_cycle(cfg, client, store, collector)
    await client.aclose()
    return time.perf_counter() - t0, time.process_time() - c0, out.requests, out.weight


async def main_async(n: int, rounds: int, latency_ms: float) -> None:
    banner("freshness: cycle over its latency floor, CPU per request over bare httpx, weight budget")
    with SimServerProcess(n, latency_ms=latency_ms) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = sim_config(srv.url)
        store = Store(Path(tmp) / "bench.db")
        client = BinanceClient(cfg.exchange)
        collector = MarketCollector(client, store, cfg)
        await collector.warm_up()
        await client.aclose()
        await bot_cycle(cfg, store, collector)            # warm: history written, caches filled
        symbols = collector.universe
        conc = cfg.exchange.max_concurrency
        bots, bares, cores = [], [], []
        for i in range(rounds):
            await asyncio.to_thread(srv.reset)
            bots.append(await bot_cycle(cfg, store, collector))
            await asyncio.to_thread(srv.reset)
            cores.append(await bot_cycle(cfg, store, collector, httpcore_transport))
            await asyncio.to_thread(srv.reset)
            bares.append(await bare_httpx(srv.url, symbols, conc))
            b, h = bots[-1], bares[-1]
            print(f"  round {i + 1}: bot cycle {b[0]:.3f}s wall, {b[1]:.3f}s CPU, {b[2]} requests, weight {b[3]} | "
                  f"bare httpx {h[0]:.3f}s wall, {h[1]:.3f}s CPU, {h[2]} requests | "
                  f"bot on httpcore {cores[-1][0]:.3f}s wall, {cores[-1][1]:.3f}s CPU")
        store.close()

    requests = median([b[2] for b in bots])
    floor = math.ceil(requests / conc) * latency_ms / 1000
    wall = median([b[0] for b in bots])
    bot_cpu = median([b[1] / b[2] for b in bots]) * 1000
    bare_cpu = median([h[1] / h[2] for h in bares]) * 1000
    core_cpu = median([b[1] / b[2] for b in cores]) * 1000
    core_wall = median([b[0] for b in cores])
    weight = median([b[3] for b in bots])
    per_min = weight / cfg.engine.interval_minutes
    share = per_min / cfg.exchange.weight_limit
    bare_wall = median([h[0] for h in bares])
    print(f"cycle @{n}: median wall {wall:.3f}s over the floor ceil({requests:.0f}/{conc})x{latency_ms:g} ms = "
          f"{floor:.2f}s: {wall / floor:.2f} -> {ratio(wall / floor, TARGET_FLOOR_RATIO)}")
    print(f"  (context, same run: the bare httpx client fetching only the 600 openInterest URLs takes "
          f"{bare_wall:.3f}s = {bare_wall / (math.ceil(len(symbols) / conc) * latency_ms / 1000):.2f}x its own floor: "
          f"the simulator's own time per reply, on the same 2 cores)")
    print(f"CPU per request: bot {bot_cpu:.3f} ms (whole cycle: fetch, parse, score, store) vs bare httpx "
          f"{bare_cpu:.3f} ms (fetch + json): {bot_cpu / bare_cpu:.2f} -> "
          f"{ratio(bot_cpu / bare_cpu, TARGET_CPU_RATIO)}")
    print(f"transport, same run: httpx on httpx-aiohttp {bot_cpu:.3f} ms CPU/request ({bot_cpu / bare_cpu:.2f}x bare), "
          f"{wall:.3f}s wall | httpx on httpcore (tuned) {core_cpu:.3f} ms ({core_cpu / bare_cpu:.2f}x bare), "
          f"{core_wall:.3f}s wall ({core_wall / floor:.2f}x the floor)")
    print(f"weight: {weight:.0f} a cycle every {cfg.engine.interval_minutes:g} min = {per_min:.0f}/min of "
          f"{cfg.exchange.weight_limit}: {share:.1%} -> {ratio(share, TARGET_WEIGHT_SHARE)}")
    result("fresh", f"cycle wall / latency floor @{n}", wall / floor, TARGET_FLOOR_RATIO, "ratio")
    result("fresh", "bot CPU per request / bare httpx", bot_cpu / bare_cpu, TARGET_CPU_RATIO, "ratio")
    result("fresh", "bot CPU per request", bot_cpu, 0, "ms")
    result("fresh", "bot CPU per request on httpcore / bare httpx (context)", core_cpu / bare_cpu, 0, "ratio")
    result("fresh", "bare httpx wall / its latency floor (context)",
           bare_wall / (math.ceil(len(symbols) / conc) * latency_ms / 1000), 0, "ratio")
    result("fresh", "steady weight share of the IP budget", share, TARGET_WEIGHT_SHARE, "share")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--latency-ms", type=float, default=50.0)
    a = p.parse_args()
    asyncio.run(main_async(a.symbols, a.rounds, a.latency_ms))


if __name__ == "__main__":
    main()
