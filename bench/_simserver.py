"""The Binance simulator server in its own process, for benchmarks (its CPU is not the bot's CPU).

    python bench/_simserver.py --symbols 600 --latency-ms 50 [--speed 1] [--weight-limit 2400] ...

Prints one line, "<base url> <control url>", then serves until SIGTERM/SIGINT. The control server
(loopback, separate port) answers:
    GET /counts  -> {"requests": {path: n}, "used_weight": n}   (requests since the last reset)
    GET /reset   -> server.reset_counts() (forget recorded requests and all rate-limit usage)
    POST /inject {"name", "path", "symbol", "field", "value"} -> a lasting value fault (a step in the market)
    GET /injected -> {name: first time (epoch s) a reply carried it}      GET /clear -> every fault removed

`SimServerProcess` starts it as a child process and stops it by its own handle.
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--symbols", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--weight-limit", type=int, default=2400)
    p.add_argument("--futures-data-limit", type=int, default=1000)
    args = p.parse_args(argv)

    from aiohttp import web

    from bot.demo_market.binance_server import BinanceSimServer, Faults
    from bot.demo_market.market import MarketSimulator
    from bot.demo_market.serve import run_until_signalled

    sim = MarketSimulator(n_symbols=args.symbols, seed=args.seed, speed=args.speed)
    server = BinanceSimServer(sim, faults=Faults(latency_ms=args.latency_ms), weight_limit=args.weight_limit,
                              futures_data_limit=args.futures_data_limit)

    async def counts(_req):
        by_path = collections.Counter(p for p, _q in server.requests)
        return web.json_response({"requests": dict(by_path), "used_weight": server.used_weight})

    async def reset(_req):
        server.reset_counts()
        return web.json_response({"ok": True})

    import time
    injected: dict[str, object] = {}        # name -> its Fault
    first_hit: dict[str, float] = {}
    apply_values = server.faults.apply_values

    def apply_and_note(path, payload):
        out = apply_values(path, payload)
        for name, f in injected.items():
            if f.hits and name not in first_hit:
                first_hit[name] = time.time()
        return out

    server.faults.apply_values = apply_and_note

    async def inject(req):
        body = await req.json()
        injected[body["name"]] = server.faults.add("value", body["path"], body["symbol"], times=None,
                                                   field=body["field"], value=body["value"])
        return web.json_response({"ok": True})

    async def first_hits(_req):
        return web.json_response(first_hit)

    async def clear(_req):
        server.faults.clear()
        injected.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/counts", counts)
    app.router.add_get("/reset", reset)
    app.router.add_post("/inject", inject)
    app.router.add_get("/injected", first_hits)
    app.router.add_get("/clear", clear)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start() -> str:
        url = await server.start(args.host, args.port)
        await runner.setup()
        site = web.TCPSite(runner, args.host, 0)
        await site.start()
        return f"{url} http://{args.host}:{runner.addresses[0][1]}"

    async def stop() -> None:
        await runner.cleanup()
        await server.stop()

    return run_until_signalled(start, stop)


class SimServerProcess:
    """Context manager: the simulator server as a child process (stopped by its own pid, never by name)."""

    def __init__(self, symbols: int, *, latency_ms: float = 0, speed: float = 1.0, seed: int = 7,
                 weight_limit: int = 2400, futures_data_limit: int = 1000):
        self.argv = [sys.executable, str(HERE / "_simserver.py"), "--symbols", str(symbols),
                     "--latency-ms", str(latency_ms), "--speed", str(speed), "--seed", str(seed),
                     "--weight-limit", str(weight_limit), "--futures-data-limit", str(futures_data_limit)]
        self.proc: subprocess.Popen | None = None
        self.url = self.control = ""

    def __enter__(self) -> "SimServerProcess":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.stop()
            raise RuntimeError(f"simulator server did not start (exit code {self.proc.returncode})")
        self.url, self.control = line
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.control + path, timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        self._get("/reset")

    def counts(self) -> dict[str, int]:
        return self._get("/counts")["requests"]

    def inject(self, name: str, path: str, symbol: str, field: str, value: str) -> None:
        """A lasting step: `field` of `symbol`'s replies on `path` becomes `value` until `clear`."""
        data = json.dumps({"name": name, "path": path, "symbol": symbol, "field": field, "value": value}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.control + "/inject", data=data), timeout=10) as r:
            r.read()

    def injected(self) -> dict[str, float]:
        return self._get("/injected")

    def clear(self) -> None:
        self._get("/clear")


if __name__ == "__main__":
    sys.exit(main())
