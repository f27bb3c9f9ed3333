"""The web page's cost over a bare aiohttp handler: requests/s and p95 latency for `/` and `/api/public/pressure`
with 600 symbols, side by side with a handler returning a constant body of the same size (the ratio is the figure).

The server runs in its own process (this script with --serve): the bot's real `WebServer` app (middlewares, request
budget, per-cycle cache, ETag check, security headers) over a published snapshot of N scored symbols, and on a
second port a bare aiohttp app whose one handler returns a constant of exactly the bytes the real route returns.
The client (this process, aiohttp over loopback, `--concurrency` connections) sends bounded request counts, in
alternating rounds so load on a shared machine hits both alike; bodies uncompressed (Accept-Encoding: identity)
so both sides send the same bytes. Also shown: a poll that revalidates with If-None-Match (a 304).

Run: python bench/web.py [--symbols 600] [--requests 2000] [--rounds 3] [--concurrency 8]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from _common import CONFIG_PATH, ROOT, banner, median, result

PATHS = ("/", "/api/public/pressure")


# ---------------------------------------------------------------------------------------------- the server side
class _Queries:
    """The port as the web adapter reads it, over one published snapshot (no store: the routes measured don't
    read one)."""

    def __init__(self, market):
        self.market = market

    def snapshot(self):
        return self.market.current()

    async def public_signals(self, limit=50, symbol=None, since_ms=None):
        return []

    async def chart(self, symbol):
        return b""


def market_inputs(n: int, seed: int = 1) -> list:
    """N symbols of realistic score inputs (a few stressed, a few without 24h history)."""
    import random

    from bot.score import ScoreInputs
    rng = random.Random(seed)
    out = []
    for i in range(n):
        stressed = rng.random() < 0.07
        f8 = rng.gauss(0.0001, 0.00015) + (rng.choice((-1, 1)) * rng.uniform(0.0005, 0.003) if stressed else 0)
        out.append(ScoreInputs(
            symbol=f"S{i:04d}USDT", funding_rate=f8, funding_interval_hours=8.0,
            oi_change_1h=rng.gauss(0, 0.008),
            oi_change_4h=rng.gauss(0, 0.02) + (rng.uniform(-0.1, 0.2) if stressed else 0),
            oi_change_24h=None if rng.random() < 0.03 else
            rng.gauss(0, 0.05) + (rng.uniform(-0.1, 0.3) if stressed else 0),
            basis=rng.gauss(0, 0.0006) + (f8 * 2 if stressed else 0),
            price_change_1h=rng.gauss(0, 0.008), price_change_24h=rng.gauss(0, 0.045)))
    return out


async def serve(n: int) -> None:
    from aiohttp import web

    from bot.adapters.web import WebServer
    from bot.config import load_config
    from bot.queries import MarketSnapshot
    from bot.score import score_all

    cfg = load_config(CONFIG_PATH)
    market = MarketSnapshot()
    results = [r.as_dict() for r in score_all(market_inputs(n), cfg.score)]
    market.publish(1_796_000_000_000, results, {r["symbol"] for r in results})
    real = WebServer(_Queries(market), cfg.score, cfg.engine.interval_minutes * 60, rate=1e9, burst=10 ** 9)

    runners = []

    async def listen(app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return runner.addresses[0][1]

    real_port = await listen(real.app)
    # the real routes' bodies, once, so the bare handler returns exactly as many bytes
    from aiohttp import ClientSession
    sizes, cold = {}, {}
    async with ClientSession(f"http://127.0.0.1:{real_port}", headers={"Accept-Encoding": "identity"}) as http:
        for path in PATHS:
            t0 = time.perf_counter()
            async with http.get(path) as r:          # the first request of a cycle renders (once per cycle)
                sizes[path] = (await r.read(), r.headers["Content-Type"])
            cold[path] = (time.perf_counter() - t0) * 1000
            async with http.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as r:
                cold[path] = (cold[path], len(await r.read()))
    bare = web.Application()
    for path, (body, ctype) in sizes.items():
        const = b"x" * len(body)

        async def handler(request, const=const, ctype=ctype):
            return web.Response(body=const, headers={"Content-Type": ctype})
        bare.router.add_get(path, handler)
    bare_port = await listen(bare)
    print(f"real http://127.0.0.1:{real_port}", flush=True)
    print(f"bare http://127.0.0.1:{bare_port}", flush=True)
    print("sizes " + ", ".join(f"{p} {len(b)} ({cold[p][1]} gzipped), first request of a cycle {cold[p][0]:.0f} ms"
                               for p, (b, _) in sizes.items()), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)     # until the parent closes stdin
    for runner in runners:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------- the client side
async def measure(base: str, path: str, requests: int, concurrency: int, headers: dict) -> tuple[float, float]:
    """(requests/s, p95 latency ms) for `requests` GETs of `path`, `concurrency` at a time."""
    import aiohttp
    latencies: list[float] = []
    todo = iter(range(requests))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=conn, headers=headers, auto_decompress=False) as http:
        async with http.get(path) as r:             # connection set up, page cached
            await r.read()

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                async with http.get(path) as r:
                    await r.read()
                    assert r.status in (200, 304), r.status
                latencies.append(time.perf_counter() - t0)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, statistics.quantiles(latencies, n=20)[18] * 1000


async def client(real: str, bare: str, a) -> dict:
    import aiohttp
    identity = {"Accept-Encoding": "identity"}
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    async with aiohttp.ClientSession(real, headers=identity) as http:
        async with http.get("/") as r:
            etag = r.headers["ETag"]
    for _ in range(a.rounds):
        for path in PATHS:
            for side, base in (("bot", real), ("bare", bare)):
                figures.setdefault((path, side), []).append(
                    await measure(base, path, a.requests, a.concurrency, identity))
        figures.setdefault(("/ (If-None-Match: 304)", "bot"), []).append(
            await measure(real, "/", a.requests, a.concurrency, dict(identity, **{"If-None-Match": etag})))
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--requests", type=int, default=2000, help="requests per measurement (bounded)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        asyncio.run(serve(a.symbols))
        return
    a.requests = max(20, min(a.requests, 20_000))
    command = (f"python bench/web.py --symbols {a.symbols} --requests {a.requests} --rounds {a.rounds} "
               f"--concurrency {a.concurrency}")
    banner(f"web: the page and the JSON API with {a.symbols} symbols vs a bare aiohttp handler of the same size")
    print(f"reproduce: {command}")
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--symbols", str(a.symbols)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        real = server.stdout.readline().split()[1]
        bare = server.stdout.readline().split()[1]
        print(f"bodies (bytes): {server.stdout.readline().split(' ', 1)[1].strip()}")
        print(f"server in its own process; client: aiohttp, {a.concurrency} connections, {a.requests} requests x "
              f"{a.rounds} rounds each")
        figures = asyncio.run(client(real, bare, a))
    finally:
        server.stdin.close()
        server.wait(10)

    print(f"\n{'route':26} {'server':6} {'req/s':>8} {'p95 ms':>8}   (medians of {a.rounds} rounds)")
    med = {k: (median([f[0] for f in v]), median([f[1] for f in v])) for k, v in figures.items()}
    for (path, side), (rps, p95) in med.items():
        print(f"{path:26} {side:6} {rps:8.0f} {p95:8.2f}")
    print()
    for path in PATHS:
        bot, bare_ = med[(path, "bot")], med[(path, "bare")]
        slower = bare_[0] / bot[0]
        print(f"{path:26} bare/bot requests/s = {slower:.2f}x  (p95 {bot[1]:.2f} ms vs {bare_[1]:.2f} ms)")
        result("web", f"{path} req/s, bare handler / bot", slower, 0, "x")
        result("web", f"{path} req/s (bot)", bot[0], 0, "req/s")
        result("web", f"{path} p95 (bot)", bot[1], 0, "ms")
    print(f"\nreproduce: {command}")


if __name__ == "__main__":
    main()
