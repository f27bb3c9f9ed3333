"""The simulator's liquidations: Binance's force-order stream (``!forceOrder@arr``) from the simulated market.

Prints follow the price path: a minute whose mark price falls liquidates longs (``S=SELL``), one whose price rises
liquidates shorts (``S=BUY``), in proportion to the move beyond the quiet-market noise and to the open interest.
Where the simulator's own crowded side is being flushed — an ``unwind`` of a long crowding falling, of a short ramp
rising, a ``squeeze`` moving against its trapped side — the cascade is several times larger: the demo's prints
land where its crowded positions were built, so the estimated map and the prints tell one story.

Like Binance, at most one print per symbol per second (a minute's liquidations are split over distinct seconds),
so totals are a floor. Deterministic: the same market gives the same prints for the same time range.

:class:`ForceOrderStream` serves them as a websocket on the Binance-shaped server (``/ws/!forceOrder@arr``); its
``drop()`` closes every connection (the reconnect test).
"""
from __future__ import annotations

import asyncio
import math
import weakref

from aiohttp import WSCloseCode, web

from bot.demo_market.market import MINUTE_MS, MarketSimulator, _key64, _u01

__all__ = ["force_orders", "ForceOrderStream", "STREAM_PATH"]

STREAM_PATH = "/ws/!forceOrder@arr"
QUIET_MOVE = 0.0003          # minute moves under 3 bp liquidate nobody
NOTIONAL_PER_MOVE = 0.05     # liquidated notional per unit of excess move, as a share of open interest (USD)
CASCADE = 5.0                # the crowded side being flushed by its own episode
PRINT_USD = 25_000.0         # a minute's notional is split into prints of about this size (at most 60)


def _cascade(sim: MarketSimulator, symbol: str, t: int, falling: bool) -> float:
    e = sim.state(symbol, t).episode
    if e is None:
        return 1.0
    if e.kind == "unwind":
        return CASCADE if falling == (e.side == "long") else 1.0
    if e.kind == "squeeze":
        return CASCADE if falling == (e.side == "long") else 1.0
    return 1.0


def force_orders(sim: MarketSimulator, symbol: str, start_ms: int, end_ms: int) -> list[dict]:
    """Binance ``forceOrder`` events with ``start_ms <= T < end_ms``, ascending."""
    out: list[dict] = []
    key = _key64(f"{sim.seed}:liq:{symbol}")
    for m in range(start_ms // MINUTE_MS * MINUTE_MS, end_ms, MINUTE_MS):
        a, b = sim.state(symbol, m), sim.state(symbol, m + MINUTE_MS)
        r = math.log(b.mark_price / a.mark_price)
        excess = abs(r) - QUIET_MOVE
        if excess <= 0:
            continue
        falling = r < 0
        notional = a.open_interest * a.mark_price * NOTIONAL_PER_MOVE * excess * _cascade(sim, symbol, m, falling)
        n = max(1, min(60, round(notional / PRINT_USD)))
        seconds = sorted(int(_u01(key ^ (m + 7919 * i)) * 60) for i in range(n))
        for i, s in enumerate(sorted(set(seconds))):
            ts = m + s * 1000
            if not start_ms <= ts < end_ms:
                continue
            price = a.mark_price + (b.mark_price - a.mark_price) * s / 60
            qty = notional / len(set(seconds)) / price
            out.append(_event(symbol, "SELL" if falling else "BUY", price, qty, ts))
    return out


def _num(x: float) -> str:
    return f"{x:.8g}" if x < 1e8 else f"{x:.0f}"


def _event(symbol: str, side: str, price: float, qty: float, ts: int) -> dict:
    """One event as Binance sends it (a liquidation is an IOC limit order, filled at its average price)."""
    q, p = _num(qty), _num(price)
    return {"e": "forceOrder", "E": ts + 7, "o": {"s": symbol, "S": side, "o": "LIMIT", "f": "IOC", "q": q, "p": p,
                                                 "ap": p, "X": "FILLED", "l": q, "z": q, "T": ts}}


class ForceOrderStream:
    """Pushes the simulated market's force orders to every connected websocket as simulated time passes."""

    def __init__(self, sim: MarketSimulator, symbols: list[str] | None = None, tick_s: float = 0.2) -> None:
        self.sim = sim
        self.symbols = symbols if symbols is not None else [s for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")
                                                            if not sim.unknown(s)]
        self.tick_s = tick_s
        self.sent = 0
        self.served: list[list[int]] = []      # per connection: [from, to) simulated ms it has sent the prints of
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._dropping: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        self._sockets.add(ws)
        last = self.sim.now_ms()
        span = [last, last]
        self.served.append(span)
        try:
            while not (ws.closed or ws in self._dropping):
                await asyncio.sleep(self.tick_s)
                now = self.sim.now_ms()
                if now <= last or ws.closed or ws in self._dropping:
                    continue
                events = [e for s in self.symbols for e in force_orders(self.sim, s, last, now)]
                last = now
                for e in sorted(events, key=lambda e: e["o"]["T"]):
                    if ws.closed or ws in self._dropping:
                        break
                    await ws.send_json(e)
                    self.sent += 1
                    span[1] = e["o"]["T"] + 1
                else:
                    span[1] = now
        except ConnectionResetError:
            pass
        finally:
            await ws.close()
        return ws

    async def drop(self) -> int:
        """Close every open stream (as Binance does at its 24-hour limit or on maintenance)."""
        socks = list(self._sockets)
        self._dropping.update(socks)          # nothing more is sent on them, even while the close handshake runs
        for ws in socks:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped")
        return len(socks)
