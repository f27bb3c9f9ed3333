"""The simulator's liquidations: Binance's force-order stream (``!forceOrder@arr``) from the simulated market.

The simulator keeps its own (ground-truth) book of leveraged positions — opened as its open interest grows, the
crowded side of an episode taking the larger share — and liquidates them where its price path reaches their
liquidation prices: a ``long_crowding`` builds longs whose levels sit below, its ``unwind`` runs price down into
them, a squeeze runs price into the trapped side. So the demo's cascades happen where its crowded positions sit,
and the estimated map (which sees only candles, taker volume and open interest) can be checked against them.

Like Binance, at most one print per symbol per second, so totals are a floor. Deterministic: the same market gives
the same prints, whatever time range is asked for.

:class:`ForceOrderStream` serves them as a websocket on the Binance-shaped server (``/ws/!forceOrder@arr``); its
``drop()`` closes every connection (the reconnect test).
"""
from __future__ import annotations

import asyncio
import math
import weakref

from aiohttp import WSCloseCode, web

from bot.demo_market.market import MINUTE_MS, MarketSimulator

__all__ = ["force_orders", "ForceOrderStream", "STREAM_PATH"]

STREAM_PATH = "/ws/!forceOrder@arr"
LOOKBACK_MS = 3 * 24 * 3_600_000   # a position lives at most this long (then it is closed, not liquidated)
STEP_MS = 5 * MINUTE_MS
CHUNK_MS = 60 * MINUTE_MS         # the stream computes its prints an hour at a time           # positions are opened per 5-minute step, as open interest grows
# The simulator's own traders (deliberately not the estimate's default mix): (leverage, share, maintenance margin)
TRADERS = ((3, 0.10, 0.01), (10, 0.30, 0.008), (20, 0.30, 0.006), (50, 0.20, 0.005), (100, 0.10, 0.004))
STILL_OPEN = 0.1                  # the share of a level still open (not closed, not topped up) when price gets there
LONG_SHARE = {("long_crowding", "long"): 0.8, ("short_ramp", "short"): 0.2, ("squeeze", "long"): 0.7,
              ("squeeze", "short"): 0.3}    # who opens the new positions during an episode (else half and half)


def _first_cross(table: list[list[float]], start: int, limit: int, level: float, below: bool) -> int | None:
    """The first minute index i in [start, limit) whose low <= level (below) / high >= level, by binary lifting
    over a sparse table of range minima (of lows, or of negated highs)."""
    key = level if below else -level
    pos = start
    for j in range(len(table) - 1, -1, -1):
        if pos + (1 << j) <= limit and table[j][pos] > key:
            pos += 1 << j
    return pos if pos < limit else None


def _sparse(values: list[float]) -> list[list[float]]:
    table = [values]
    j = 1
    while (1 << j) <= len(values):
        prev, half = table[-1], 1 << (j - 1)
        table.append([min(prev[i], prev[i + half]) for i in range(len(values) - (1 << j) + 1)])
        j += 1
    return table


def force_orders(sim: MarketSimulator, symbol: str, start_ms: int, end_ms: int) -> list[dict]:
    """Binance ``forceOrder`` events with ``start_ms <= T < end_ms``, ascending.

    The simulator's traders open positions as its open interest grows (per 5-minute step, at the step's price; the
    crowded side of an episode takes the larger share), over its own leverage mix; a position is liquidated at the
    first minute whose price range reaches its isolated liquidation price, within LOOKBACK_MS of opening. The print
    is at that price, in the second the path crosses it; when two fall in the same second only the last is sent,
    as on Binance: the stream is a floor. Depends only on the market, never on the range asked for."""
    lo = (start_ms - LOOKBACK_MS) // STEP_MS * STEP_MS
    first_minute = lo // MINUTE_MS
    marks, ois, episodes = sim.minute_path(symbol, first_minute, -(-end_ms // MINUTE_MS) + 1)
    lows = [min(a, b) for a, b in zip(marks, marks[1:])]
    mins, maxs = _sparse(lows), _sparse([-max(a, b) for a, b in zip(marks, marks[1:])])
    per = STEP_MS // MINUTE_MS
    crossings: dict[int, tuple[str, float, float]] = {}      # second (ms) -> (side, price, notional)
    for k in range(0, len(lows) - per, per):
        grown = ois[k + per] - ois[k]
        if grown <= 0:
            continue
        entry = sum(marks[k:k + per + 1]) / (per + 1)
        ep = episodes[k]
        long_share = LONG_SHARE.get((ep.kind, ep.side), 0.5) if ep is not None else 0.5
        limit = min(len(lows), k + per + LOOKBACK_MS // MINUTE_MS)
        for lev, share, mmr in TRADERS:
            for side, part in (("long", long_share), ("short", 1 - long_share)):
                level = entry * ((1 - 1 / lev) / (1 - mmr) if side == "long" else (1 + 1 / lev) / (1 + mmr))
                i = _first_cross(mins if side == "long" else maxs, k + per, limit, level, side == "long")
                if i is None:
                    continue
                a, b = marks[i], marks[i + 1]
                frac = min(1.0, max(0.0, (level - a) / (b - a))) if b != a else 0.0
                ts = (first_minute + i) * MINUTE_MS + min(59, int(frac * 60)) * 1000
                if start_ms <= ts < end_ms:
                    crossings[ts] = (side, level, grown * entry * part * share * STILL_OPEN)
    return [_event(symbol, "SELL" if side == "long" else "BUY", price, notional / price, ts)
            for ts, (side, price, notional) in sorted(crossings.items())]


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
        self._chunks: dict[tuple[str, int], list[dict]] = {}    # (symbol, hour) -> its events (computed once)

    def _events(self, symbol: str, start_ms: int, end_ms: int) -> list[dict]:
        """The events in [start_ms, end_ms), from hour-long chunks computed once (a chunk replays 3 days)."""
        out = []
        for hour in range(start_ms // CHUNK_MS, (end_ms - 1) // CHUNK_MS + 1):
            key = (symbol, hour)
            if key not in self._chunks:
                if len(self._chunks) > 8 * len(self.symbols):
                    for old in sorted(self._chunks, key=lambda k: k[1])[:len(self._chunks) // 2]:
                        del self._chunks[old]
                self._chunks[key] = force_orders(self.sim, symbol, hour * CHUNK_MS, (hour + 1) * CHUNK_MS)
            out += [e for e in self._chunks[key] if start_ms <= e["o"]["T"] < end_ms]
        return out

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
                events = [e for s in self.symbols for e in self._events(s, last, now)]
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
