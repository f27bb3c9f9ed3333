"""A Binance-USDⓈ-M-shaped HTTP server on loopback, backed by :class:`MarketSimulator`.

Serves (GET) ``/fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/exchangeInfo``, ``/fapi/v1/premiumIndex``,
``/fapi/v1/ticker/24hr``, ``/fapi/v1/openInterest``, ``/fapi/v1/fundingInfo`` and
``/futures/data/openInterestHist`` (and the force-order websocket ``/ws/!forceOrder@arr``,
:mod:`bot.demo_market.liquidations`) with Binance's shapes, errors, weights and limits:

* every response carries ``X-MBX-USED-WEIGHT-1M`` (weight used in the current wall-clock minute,
  including the request itself); above 2400 → HTTP 429 ``-1003`` with ``Retry-After``;
* ``/futures/data/*`` additionally allows 1000 requests per rolling 5 minutes → HTTP 429;
* ``symbol`` given → single object, absent → array (premiumIndex, ticker); unknown symbol → 400 ``-1121``;
  openInterest without symbol → 400 ``-1102``; bad period / limit → 400 ``-1120`` / ``-1130``.

Faults can be injected at runtime through :class:`Faults` (see :meth:`Faults.add`).

Standalone::

    python -m bot.demo_market.binance_server --port 8081 --symbols 300 --seed 7 --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from bot.demo_market.liquidations import STREAM_PATH, ForceOrderStream
from bot.demo_market.market import MarketSimulator
from bot.demo_market.serve import run_until_signalled

__all__ = ["Faults", "Fault", "BinanceSimServer", "FAULT_KINDS", "main"]

FAULT_KINDS = ("429", "418", "5xx", "timeout", "malformed", "missing_symbol", "value", "trickle")

MSG_429 = ("Too many requests; current limit is 2400 requests per minute. Please use the websocket for live "
           "updates to avoid polling the API.")
MSG_FUTURES_DATA_429 = ("Too many requests; current limit of IP(127.0.0.1) is 1000 requests per 5 minutes. "
                        "Please use the websocket for live updates to avoid polling the API.")
MSG_418 = ("Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live "
           "updates to avoid bans.")

_GATEWAY_HTML = {
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
         "</center>\r\n</body>\r\n</html>\r\n",
    504: "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway "
         "Time-out</h1></center>\r\n</body>\r\n</html>\r\n",
    500: "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n<center><h1>500 Internal "
         "Server Error</h1></center>\r\n</body>\r\n</html>\r\n",
}

# path -> (weight with symbol, weight without symbol)
_WEIGHTS = {
    "/fapi/v1/premiumIndex": (1, 10),
    "/fapi/v1/ticker/24hr": (1, 40),
    "/fapi/v1/openInterest": (1, 1),
    "/fapi/v1/exchangeInfo": (1, 1),
    "/fapi/v1/fundingInfo": (0, 0),
    "/futures/data/openInterestHist": (0, 0),
    "/fapi/v1/ping": (1, 1),
    "/fapi/v1/time": (1, 1),
}


def kline_weight(limit: int) -> int:
    """Binance's weight of one /fapi/v1/klines request, by its limit."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


@dataclass
class Fault:
    kind: str
    path: str = ""
    symbol: str | None = None
    times: int | None = 1          # None = forever
    retry_after: int | float | str | None = 1     # sent as str(retry_after): "inf", "1e9" are fair game
    status: int | None = None
    field: str | None = None       # "value": the field replaced ...
    value: object = None           # ... by this (a string such as "NaN" as Binance would send, or a float)
    hits: int = 0

    def matches(self, path: str, symbol: str | None) -> bool:
        if not path.startswith(self.path):
            return False
        return self.symbol is None or self.symbol == symbol


@dataclass
class Faults:
    """Runtime-mutable fault injection.

    ``latency_ms`` delays every response.  :meth:`add` queues one-shot faults matched by path prefix
    (``""`` = any path) and optional ``symbol`` (the request's ``symbol`` query parameter); the first
    matching fault in queue order fires and its ``times`` counter is decremented (``times=None``:
    never expires).  Kinds:

    * ``"429"`` — HTTP 429 ``{"code":-1003,...}``, ``Retry-After: <retry_after>`` unless ``retry_after`` is None;
    * ``"418"`` — HTTP 418 IP-ban body (``-1003`` "Way too many requests; IP(...) banned until ..."), Retry-After;
    * ``"5xx"`` — ``status`` (default 502) with a gateway-style HTML body (503: empty body);
    * ``"timeout"`` — the server sleeps ``timeout_s`` (30 s) before answering normally;
    * ``"malformed"`` — HTTP 200, ``application/json``, body is the real answer truncated (invalid JSON);
    * ``"missing_symbol"`` — single-symbol requests for ``symbol`` get HTTP 400 ``-1121`` (decrementing
      ``times``); while the fault is pending the symbol is also left out of all-symbol arrays
      (premiumIndex, ticker, exchangeInfo, fundingInfo) on matching paths, like a delisted symbol;
    * ``"value"`` — the reply is answered normally, then ``field`` of ``symbol``'s entry (every entry when
      ``symbol`` is None) is replaced by ``value`` (``"NaN"``, ``"Infinity"``, ``"1e308"`` as strings the way
      Binance sends numbers, or a float — ``float("nan")`` goes out as a bare ``NaN`` token); one reply that
      carries the symbol counts as one use of ``times``;
    * ``"trickle"`` — HTTP 200 with the real answer's ``Content-Length``, its body sent one byte every
      ``trickle_interval_s`` (a connection that never stalls long enough for a per-read timeout).

    Listings: ``unlisted`` symbols do not exist on the exchange (left out of every array, ``-1121`` when
    named) until removed from the set — a symbol listed later; ``listed_at[symbol]`` (exchange ms) drops
    openInterestHist rows older than that time — a recent listing's short (or empty) history.
    """

    latency_ms: float = 0
    timeout_s: float = 30.0
    trickle_interval_s: float = 2.0
    queue: list[Fault] = field(default_factory=list)
    unlisted: set[str] = field(default_factory=set)
    listed_at: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, path: str = "", symbol: str | None = None, times: int | None = 1,
            retry_after: int | float | str | None = 1, status: int | None = None,
            field: str | None = None, value: object = None) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for forever)")
        if kind == "value" and not field:
            raise ValueError("a value fault names the field it replaces")
        f = Fault(kind, path, symbol, times, retry_after, status, field, value)
        self.queue.append(f)
        return f

    def clear(self) -> None:
        self.queue.clear()

    def pending(self) -> int:
        return len(self.queue)

    def _consume(self, f: Fault) -> None:
        f.hits += 1
        if f.times is not None:
            f.times -= 1
            if f.times <= 0:
                try:
                    self.queue.remove(f)
                except ValueError:
                    pass

    def take(self, path: str, symbol: str | None) -> Fault | None:
        """First matching fault for a request (consumed).  ``missing_symbol`` only matches
        requests that name a symbol."""
        for f in list(self.queue):
            if f.kind == "value" or (f.kind == "missing_symbol" and symbol is None):
                continue
            if f.matches(path, symbol):
                self._consume(f)
                return f
        return None

    def hidden_symbols(self, path: str) -> set[str]:
        return {f.symbol for f in self.queue
                if f.kind == "missing_symbol" and f.symbol is not None and path.startswith(f.path)} | self.unlisted

    def apply_values(self, path: str, payload):
        """Replace fields of a successful reply as pending ``value`` faults say; returns the payload."""
        for f in [f for f in self.queue if f.kind == "value" and path.startswith(f.path)]:
            entries = payload if isinstance(payload, list) else [payload]
            hit = False
            for entry in entries:
                if isinstance(entry, dict) and (f.symbol is None or entry.get("symbol") == f.symbol):
                    entry[f.field] = f.value
                    hit = True
            if hit:
                self._consume(f)
        return payload


def _json(payload, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload, separators=(",", ":")).encode(),
                        content_type="application/json")


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    return _json({"code": code, "msg": msg}, status)


def _mandatory(name: str) -> web.Response:
    return _error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _invalid(name: str) -> web.Response:
    return _error(-1130, f"Data sent for parameter '{name}' is not valid.")


def _window(query: dict, default_limit: int, max_limit: int) -> tuple[int, int | None, int | None] | web.Response:
    """(limit, startTime, endTime) of a history request as Binance reads them, or its error reply."""
    ints: dict[str, int | None] = {}
    for name in ("limit", "startTime", "endTime"):
        raw = query.get(name)
        if raw is None or raw == "":
            ints[name] = None
            continue
        try:
            ints[name] = int(raw)
        except ValueError:
            return _invalid(name)
    limit = default_limit if ints["limit"] is None else ints["limit"]
    if not 1 <= limit <= max_limit:
        return _invalid("limit")
    start, end = ints["startTime"], ints["endTime"]
    if start is not None and end is not None and start > end:
        return _error(-1023, "Start time is greater than end time.")
    return limit, start, end


def _bad_symbol() -> web.Response:
    return _error(-1121, "Invalid symbol.")


class BinanceSimServer:
    """aiohttp server answering Binance USDⓈ-M public market-data endpoints from a simulator."""

    def __init__(self, sim: MarketSimulator, faults: Faults | None = None, *,
                 weight_limit: int = 2400, futures_data_limit: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self.sim = sim
        self.faults = faults if faults is not None else Faults()
        self.weight_limit = weight_limit
        self.futures_data_limit = futures_data_limit
        self.clock = clock
        self.requests: list[tuple[str, dict]] = []
        self.base_url: str | None = None
        self._minute: int | None = None
        self._used = 0
        self._fd_times: collections.deque[float] = collections.deque()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._routes = {
            "/fapi/v1/ping": self._ping,
            "/fapi/v1/time": self._time,
            "/fapi/v1/exchangeInfo": self._exchange_info,
            "/fapi/v1/premiumIndex": self._premium_index,
            "/fapi/v1/ticker/24hr": self._ticker,
            "/fapi/v1/openInterest": self._open_interest,
            "/fapi/v1/fundingInfo": self._funding_info,
            "/futures/data/openInterestHist": self._oi_hist,
            "/fapi/v1/klines": self._klines,
        }
        self.force_orders = ForceOrderStream(sim)      # the websocket ws://host:port/ws/!forceOrder@arr

    # ------------------------------------------------------------------------------------------
    # lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise RuntimeError("server already started")
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get(STREAM_PATH, self.force_orders.handle)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._close_streams)    # else each open stream holds stop() for shutdown_timeout
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        addr = runner.addresses[0]
        self.base_url = f"http://{host}:{addr[1]}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _close_streams(self, _app: web.Application) -> None:
        await self.force_orders.drop()

    async def __aenter__(self) -> "BinanceSimServer":
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------
    # accounting

    def reset_counts(self) -> None:
        """Forget recorded requests and all rate-limit usage."""
        self.requests.clear()
        self._minute = None
        self._used = 0
        self._fd_times.clear()

    @property
    def used_weight(self) -> int:
        if self._minute != int(self.clock() // 60):
            return 0
        return self._used

    def count(self, path_prefix: str = "", symbol: str | None = None) -> int:
        """Number of recorded requests whose path starts with ``path_prefix`` (and for ``symbol``)."""
        return sum(1 for p, q in self.requests
                   if p.startswith(path_prefix) and (symbol is None or q.get("symbol") == symbol))

    @staticmethod
    def weight_of(path: str, query: dict) -> int:
        if path == "/fapi/v1/klines":
            try:
                return kline_weight(int(query.get("limit") or 500))
            except ValueError:
                return 1
        w = _WEIGHTS.get(path)
        if w is None:
            return 1
        return w[0] if query.get("symbol") else w[1]

    def _add_weight(self, weight: int) -> int:
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute = minute
            self._used = 0
        self._used += weight
        return self._used

    def _seconds_to_next_minute(self) -> int:
        now = self.clock()
        return max(1, math.ceil(60 - (now % 60)))

    # ------------------------------------------------------------------------------------------
    # dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = dict(request.query)
        self.requests.append((path, query))
        used = self._add_weight(self.weight_of(path, query))
        resp = await self._respond(request, path, query)
        if not resp.prepared:                      # a trickled reply sent its headers already
            resp.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return resp

    async def _respond(self, request: web.Request, path: str, query: dict) -> web.StreamResponse:
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000.0)
        if request.method not in ("GET", "HEAD"):
            return _error(-1000, "An unknown error occurred while processing the request.", 405)
        symbol = query.get("symbol") or None
        fault = self.faults.take(path, symbol)
        if fault is not None:
            resp = await self._fault_response(fault, path, query, request)
            if resp is not None:
                return resp
        if self._used > self.weight_limit:
            resp = _error(-1003, MSG_429.replace("2400", str(self.weight_limit)), 429)
            resp.headers["Retry-After"] = str(self._seconds_to_next_minute())
            return resp
        if path.startswith("/futures/data/"):
            now = self.clock()
            window = self._fd_times
            while window and window[0] <= now - 300:
                window.popleft()
            window.append(now)
            if len(window) > self.futures_data_limit:
                resp = _error(-1003, MSG_FUTURES_DATA_429.replace("1000", str(self.futures_data_limit)), 429)
                resp.headers["Retry-After"] = str(max(1, math.ceil(window[0] + 300 - now)))
                return resp
        return self._handle(path, query)

    def _handle(self, path: str, query: dict) -> web.Response:
        handler = self._routes.get(path)
        if handler is None:
            return web.Response(status=404, text="<html><body><h2>404 Not found</h2></body></html>",
                                content_type="text/html")
        resp = handler(query, self.faults.hidden_symbols(path))
        if resp.status == 200 and any(f.kind == "value" for f in self.faults.queue):
            payload = self.faults.apply_values(path, json.loads(resp.body))
            return _json(payload)
        return resp

    async def _fault_response(self, f: Fault, path: str, query: dict,
                              request: web.Request) -> web.StreamResponse | None:
        kind = f.kind
        if kind == "429":
            resp = _error(-1003, MSG_429, f.status or 429)
            if f.retry_after is not None:
                resp.headers["Retry-After"] = str(f.retry_after)
            return resp
        if kind == "418":
            try:
                ban_s = float(f.retry_after)              # type: ignore[arg-type]
            except (TypeError, ValueError):
                ban_s = 120.0
            if not math.isfinite(ban_s) or ban_s > 3 * 86_400:
                ban_s = 120.0                              # a hostile Retry-After; the body states a real ban
            until = int((self.clock() + ban_s) * 1000)
            resp = _error(-1003, MSG_418.format(until=until), f.status or 418)
            if f.retry_after is not None:
                resp.headers["Retry-After"] = str(f.retry_after)
            return resp
        if kind == "5xx":
            status = f.status or 502
            html = _GATEWAY_HTML.get(status)
            if html is None:
                return web.Response(status=status, body=b"")
            return web.Response(status=status, text=html, content_type="text/html")
        if kind == "timeout":
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.faults.timeout_s)
                return web.Response(status=503, body=b"")  # server stopping
            except asyncio.TimeoutError:
                return None  # answer normally, (far too) late
        if kind == "malformed":
            real = self._handle(path, query)
            body = real.body if isinstance(real.body, (bytes, bytearray)) else b"{}"
            cut = bytes(body[: max(1, len(body) // 2)])
            return web.Response(status=200, body=cut, content_type="application/json")
        if kind == "missing_symbol":
            return _bad_symbol()
        if kind == "trickle":
            return await self._trickle(request, self._handle(path, query))
        return None

    async def _trickle(self, request: web.Request, real: web.Response) -> web.StreamResponse:
        body = bytes(real.body) if isinstance(real.body, (bytes, bytearray)) else b"{}"
        resp = web.StreamResponse(status=real.status, headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(self._used)
        try:
            await resp.prepare(request)
            for i in range(len(body)):
                await resp.write(body[i:i + 1])
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.faults.trickle_interval_s)
                    break                                  # server stopping
                except asyncio.TimeoutError:
                    pass
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError, RuntimeError):
            pass                                           # the client gave up (as it should)
        return resp

    # ------------------------------------------------------------------------------------------
    # endpoints

    def _symbol_param(self, query: dict) -> tuple[str | None, web.Response | None]:
        symbol = query.get("symbol")
        if not symbol:
            return None, None
        if self.sim.unknown(symbol) or symbol in self.faults.unlisted:
            return None, _bad_symbol()
        return symbol, None

    def _ping(self, query: dict, hidden: set[str]) -> web.Response:
        return _json({})

    def _time(self, query: dict, hidden: set[str]) -> web.Response:
        return _json({"serverTime": self.sim.now_ms()})

    def _exchange_info(self, query: dict, hidden: set[str]) -> web.Response:
        info = self.sim.exchange_info()  # ?symbol= is silently ignored on fapi
        if hidden:
            info["symbols"] = [s for s in info["symbols"] if s["symbol"] not in hidden]
        return _json(info)

    def _premium_index(self, query: dict, hidden: set[str]) -> web.Response:
        symbol, err = self._symbol_param(query)
        if err is not None:
            return err
        if symbol is not None:
            return _json(self.sim.premium_index(symbol))
        rows = self.sim.premium_index()
        return _json([r for r in rows if r["symbol"] not in hidden] if hidden else rows)

    def _ticker(self, query: dict, hidden: set[str]) -> web.Response:
        symbol, err = self._symbol_param(query)
        if err is not None:
            return err
        if symbol is not None:
            return _json(self.sim.ticker_24hr(symbol))
        rows = self.sim.ticker_24hr()
        return _json([r for r in rows if r["symbol"] not in hidden] if hidden else rows)

    def _open_interest(self, query: dict, hidden: set[str]) -> web.Response:
        if not query.get("symbol"):
            return _mandatory("symbol")
        symbol, err = self._symbol_param(query)
        if err is not None:
            return err
        return _json(self.sim.open_interest(symbol))

    def _funding_info(self, query: dict, hidden: set[str]) -> web.Response:
        rows = self.sim.funding_info()
        return _json([r for r in rows if r["symbol"] not in hidden] if hidden else rows)

    def _oi_hist(self, query: dict, hidden: set[str]) -> web.Response:
        if not query.get("symbol"):
            return _mandatory("symbol")
        period = query.get("period")
        if not period:
            return _mandatory("period")
        symbol, err = self._symbol_param(query)
        if err is not None:
            return err
        if period not in MarketSimulator.PERIODS_MS:
            return _error(-1120, "Invalid interval.")
        window = _window(query, default_limit=30, max_limit=500)
        if isinstance(window, web.Response):
            return window
        rows = self.sim.open_interest_hist(symbol, period, *window)
        listed = self.faults.listed_at.get(symbol)
        if listed is not None:
            rows = [r for r in rows if r["timestamp"] >= listed]
        return _json(rows)

    def _klines(self, query: dict, hidden: set[str]) -> web.Response:
        if not query.get("symbol"):
            return _mandatory("symbol")
        interval = query.get("interval")
        if not interval:
            return _mandatory("interval")
        symbol, err = self._symbol_param(query)
        if err is not None:
            return err
        if symbol in hidden:
            return _bad_symbol()
        if interval not in MarketSimulator.KLINE_INTERVALS_MS:
            return _error(-1120, "Invalid interval.")
        window = _window(query, default_limit=500, max_limit=1500)
        if isinstance(window, web.Response):
            return window
        rows = self.sim.klines(symbol, interval, *window)
        listed = self.faults.listed_at.get(symbol)
        if listed is not None:
            rows = [r for r in rows if r[0] >= listed]
        return _json(rows)


# ----------------------------------------------------------------------------------------------
# standalone runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bot.demo_market.binance_server",
                                description="Binance USDⓈ-M-shaped market-data server backed by a seeded simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081, help="0 = pick a free port")
    p.add_argument("--symbols", type=int, default=300, help="number of tradable USDT perpetuals")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall-clock second")
    p.add_argument("--start-ms", type=int, default=None,
                   help="simulated start time in ms (default: now rounded down to 5 minutes); the market is the same for any start")
    p.add_argument("--weight-limit", type=int, default=2400, help="request weight per minute (Binance: 2400)")
    p.add_argument("--futures-data-limit", type=int, default=1000, help="/futures/data requests per 5 min")
    args = p.parse_args(argv)
    sim = MarketSimulator(n_symbols=args.symbols, seed=args.seed, speed=args.speed, start_ms=args.start_ms)
    server = BinanceSimServer(sim, weight_limit=args.weight_limit, futures_data_limit=args.futures_data_limit)
    return run_until_signalled(lambda: server.start(args.host, args.port), server.stop)


if __name__ == "__main__":
    sys.exit(main())
