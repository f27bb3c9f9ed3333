"""Where a steady cycle's CPU goes: cProfile over one 600-symbol cycle (the real client, collector, scorer and
store against the simulator server in its own process, 50 ms latency), own time summed by component.

Run: python bench/profile_cycle.py [--symbols 600] [--top 25] [--transport aiohttp|httpcore]
(--transport: the httpx client's transport, httpx-aiohttp's AiohttpTransport (the bot's default) or httpx's own
httpcore pool, tuned as bench/freshness.py does)
(cProfile, timed by process CPU time, inflates every figure; the shares between components are what to read.)
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import banner, httpcore_transport, sim_config
from _simserver import SimServerProcess

from bot.cycle import run_cycle
from bot.exchange.binance import BinanceClient
from bot.market import MarketCollector
from bot.store import Store

# (component, substrings of the function's file or name); the first match wins
COMPONENTS = [
    ("http client: connection pool (httpcore)", ("httpcore/_async/connection_pool",)),
    ("http client: connection/HTTP/1.1 (httpcore, h11)", ("httpcore", "/h11/")),
    ("http client: request/response objects, URLs, headers (httpx)", ("/httpx/",)),
    ("socket backend (anyio)", ("/anyio/",)),
    ("http client: aiohttp (session, connector, HTTP parser), yarl, multidict", ("/aiohttp/", "/yarl/", "multidict")),
    ("http client: httpx-aiohttp (the transport between them)", ("/httpx_aiohttp/",)),
    ("retry wrapper, limits, back-off (bot/exchange)", ("bot/exchange/",)),
    ("rate limiter (aiolimiter)", ("aiolimiter",)),
    ("JSON decoding", ("json/decoder", "json/__init__", "'loads'", "scanner")),
    ("JSON encoding (store payloads)", ("json/encoder", "'dumps'")),
    ("collector: parsing, inputs (bot/market)", ("bot/market.py",)),
    ("scoring (bot/score)", ("bot/score.py",)),
    ("store (bot/store, sqlite3)", ("bot/store.py", "sqlite3")),
    ("logging", ("/logging/",)),
    ("event loop, sockets, selectors (asyncio)", ("asyncio/", "selectors", "'poll'", "socket", "'send'", "'recv")),
    ("dataclasses (as_dict)", ("dataclasses",)),
]


def component(key: tuple) -> str:
    where = f"{key[0]}:{key[2]}"
    for name, needles in COMPONENTS:
        if any(n in where for n in needles):
            return name
    return "other"


async def main_async(n: int, top: int, transport: str) -> None:
    banner(f"profile: one steady {n}-symbol cycle, own CPU time by component (httpx over {transport})")
    make = httpcore_transport if transport == "httpcore" else (lambda cfg: None)
    with SimServerProcess(n, latency_ms=50) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = sim_config(srv.url)
        store = Store(Path(tmp) / "b.db")
        client = BinanceClient(cfg.exchange)
        collector = MarketCollector(client, store, cfg)
        await collector.warm_up()
        for _ in range(2):                          # warm: history, caches, connections
            await asyncio.to_thread(srv.reset)
            out = await run_cycle(cfg, client, store, collector)
        await client.aclose()
        client = BinanceClient(cfg.exchange, transport=make(cfg))
        collector.client = client
        await asyncio.to_thread(srv.reset)
        prof = cProfile.Profile(time.process_time)      # CPU time: a wait in epoll is not work
        c0 = time.process_time()
        prof.enable()
        out = await run_cycle(cfg, client, store, collector)
        prof.disable()
        cpu = time.process_time() - c0
        await client.aclose()
        store.close()
    stats = pstats.Stats(prof)
    by: dict[str, float] = defaultdict(float)
    total = 0.0
    for key, (_cc, _nc, tt, _ct, _callers) in stats.stats.items():     # type: ignore[attr-defined]
        by[component(key)] += tt
        total += tt
    print(f"{out.requests} requests; CPU {cpu:.3f}s under the profiler ({cpu / out.requests * 1000:.2f} ms/request)")
    print(f"{'component':64} {'own s':>7} {'share':>6} {'ms/req':>7}")
    for name, tt in sorted(by.items(), key=lambda kv: -kv[1]):
        print(f"{name:64} {tt:7.3f} {tt / total:6.1%} {tt / out.requests * 1000:7.3f}")
    print()
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--transport", choices=("aiohttp", "httpcore"), default="aiohttp")
    a = p.parse_args()
    asyncio.run(main_async(a.symbols, a.top, a.transport))


if __name__ == "__main__":
    main()
