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
import threading
import weakref

from aiohttp import WSCloseCode, web

from bot.demo_market.market import HOUR_MS, MINUTE_MS, MarketSimulator

__all__ = ["force_orders", "ForceOrderStream", "STREAM_PATH"]

STREAM_PATH = "/ws/!forceOrder@arr"
LOOKBACK_MS = 3 * 24 * 3_600_000   # a position lives at most this long (then it is closed, not liquidated)
STEP_MS = 5 * MINUTE_MS           # positions are opened per 5-minute step, as open interest grows
CHUNK_MS = 60 * MINUTE_MS         # the stream computes its prints an hour at a time
# The simulator's own traders (deliberately not the estimate's default mix): (leverage, share, maintenance margin)
TRADERS = ((3, 0.10, 0.01), (10, 0.30, 0.008), (20, 0.30, 0.006), (50, 0.20, 0.005), (100, 0.10, 0.004))
STILL_OPEN = 0.1                  # the share of a level still open (not closed, not topped up) when price gets there
LONG_SHARE = {("long_crowding", "long"): 0.8, ("short_ramp", "short"): 0.2, ("squeeze", "long"): 0.7,
              ("squeeze", "short"): 0.3}    # who opens the new positions during an episode (else half and half)


LOOKBACK_MIN = LOOKBACK_MS // MINUTE_MS
PER = STEP_MS // MINUTE_MS
KEEP_HOURS = 48                   # a tape keeps the prints of its last 48 hours (older ones are recomputed cold)
TAPES_PER_MARKET = 8              # symbols whose tape a market keeps (~1 MB each: <= 865 steps x 10 positions)


def force_orders(sim: MarketSimulator, symbol: str, start_ms: int, end_ms: int) -> list[dict]:
    """Binance ``forceOrder`` events with ``start_ms <= T < end_ms``, ascending.

    The simulator's traders open positions as its open interest grows (per 5-minute step, at the step's price; the
    crowded side of an episode takes the larger share), over its own leverage mix; a position is liquidated at the
    first minute whose price range reaches its isolated liquidation price, within LOOKBACK_MS of opening. The print
    is at that price, in the second the path crosses it; when two fall in the same second only the last is sent,
    as on Binance: the stream is a floor. Depends only on the market, never on the range asked for: a tape per
    (market, symbol) follows the positions forward minute by minute, so consecutive ranges (the stream asks an
    hour at a time) cost only their new minutes, and a range it cannot serve starts a fresh one 3 days earlier."""
    lo = (start_ms - LOOKBACK_MS) // STEP_MS * STEP_MS // MINUTE_MS
    with _LOCK:
        tapes = _TAPES.setdefault(sim, {})
        tape = tapes.pop(symbol, None)
        if tape is None or not tape.serves(lo, start_ms):
            tape = _Tape(symbol, lo)
        tapes[symbol] = tape                                  # most recently used last
        while len(tapes) > TAPES_PER_MARKET:
            del tapes[next(iter(tapes))]
        tape.advance(sim, -(-end_ms // MINUTE_MS))
        hits = sorted((h for hour in range(start_ms // HOUR_MS, (end_ms - 1) // HOUR_MS + 1)
                       for h in tape.hits.get(hour, ()) if start_ms <= h[0] < end_ms), key=lambda h: h[1])
    crossings = {ts: (side, price, notional) for ts, _, side, price, notional in hits}   # the last in a second wins
    return [_event(symbol, "SELL" if side == "long" else "BUY", price, notional / price, ts)
            for ts, (side, price, notional) in sorted(crossings.items())]


_LOCK = threading.Lock()         # the CLI asks from a worker thread; a tape is advanced by one caller at a time
# per market (gone with it: a tape holds no reference to its market), its symbols' tapes, least recently used first
_TAPES: weakref.WeakKeyDictionary[MarketSimulator, dict[str, "_Tape"]] = weakref.WeakKeyDictionary()


class _Tape:
    """One symbol's positions and liquidations, followed forward from the step ``origin`` (a minute).

    Positions opened at steps before ``origin`` are not followed; they can only be liquidated before
    ``origin + LOOKBACK_MIN``, so the prints from there on are complete. Every minute below ``searched`` has been
    searched for crossings; ``open`` holds the positions not yet liquidated nor expired, per step:
    [step, limit (first minute no longer searched), positions (order, side, level, notional), highest long level,
    lowest short level]."""

    def __init__(self, symbol: str, origin: int) -> None:
        self.symbol, self.origin = symbol, origin
        self.next_step = origin
        self.searched = origin
        self.kept_from = origin          # the first minute whose prints are still kept
        self.open: list[list] = []
        self.hits: dict[int, list[tuple]] = {}       # hour -> (ts, order, side, level, notional)

    def serves(self, lo: int, start_ms: int) -> bool:
        """Whether the prints from ``start_ms`` on (whose positions open from step ``lo``) can come from here."""
        return self.origin <= lo <= self.searched and start_ms >= self.kept_from * MINUTE_MS

    def advance(self, sim: MarketSimulator, to: int) -> None:
        """Search every minute below ``to``, an hour at a time (the range-minimum test then skips most steps)."""
        while self.searched < to:
            self._search(sim, self.searched, min(to, self.searched + 60))
        oldest = self.searched // 60 - KEEP_HOURS
        if oldest * 60 > self.kept_from:
            for hour in [h for h in self.hits if h < oldest]:
                del self.hits[hour]
            self.kept_from = oldest * 60

    def _search(self, sim: MarketSimulator, a: int, b: int) -> None:
        base = min(self.next_step, a)
        marks, ois, episodes = sim.minute_path(self.symbol, base, b + 1)
        while self.next_step + PER < b:
            self._open(self.next_step, marks, ois, episodes, self.next_step - base)
            self.next_step += PER
        lows = [min(marks[i - base], marks[i + 1 - base]) for i in range(a, b)]
        highs = [max(marks[i - base], marks[i + 1 - base]) for i in range(a, b)]
        low, high = min(lows), max(highs)
        still = []
        for entry in self.open:
            step, limit, _, top_long, bottom_short = entry
            i0, i1 = max(a, step + PER), min(b, limit)
            if i0 < i1:
                if i0 == a and i1 == b:
                    lo, hi = low, high
                else:
                    lo, hi = min(lows[i0 - a:i1 - a]), max(highs[i0 - a:i1 - a])
                if lo <= top_long or hi >= bottom_short:
                    self._liquidate(entry, i0, i1, a, lo, hi, lows, highs, marks, base)
            if entry[2] and limit > b:
                still.append(entry)
        self.open = still
        self.searched = b

    def _open(self, step: int, marks: list[float], ois: list[float], episodes: list, k: int) -> None:
        grown = ois[k + PER] - ois[k]
        if grown <= 0:
            return
        entry_price = sum(marks[k:k + PER + 1]) / (PER + 1)
        ep = episodes[k]
        long_share = LONG_SHARE.get((ep.kind, ep.side), 0.5) if ep is not None else 0.5
        positions = []
        for t, (lev, share, mmr) in enumerate(TRADERS):
            for si, (side, part) in enumerate((("long", long_share), ("short", 1 - long_share))):
                level = entry_price * ((1 - 1 / lev) / (1 - mmr) if side == "long" else (1 + 1 / lev) / (1 + mmr))
                positions.append((step * 16 + t * 2 + si, side, level, grown * entry_price * part * share * STILL_OPEN))
        self.open.append([step, step + PER + LOOKBACK_MIN, positions, *_bounds(positions)])

    def _liquidate(self, entry: list, i0: int, i1: int, a: int, lo: float, hi: float, lows: list[float],
                   highs: list[float], marks: list[float], base: int) -> None:
        """Record the first crossing in [i0, i1) (whose lowest low is ``lo``, highest high ``hi``) of each of the
        step's positions that has one; keep the others."""
        left = []
        for pos in entry[2]:
            order, side, level, notional = pos
            if (lo > level) if side == "long" else (hi < level):
                left.append(pos)
                continue
            for i in range(i0, i1):
                if (lows[i - a] <= level) if side == "long" else (highs[i - a] >= level):
                    x, y = marks[i - base], marks[i + 1 - base]
                    frac = min(1.0, max(0.0, (level - x) / (y - x))) if y != x else 0.0
                    ts = i * MINUTE_MS + min(59, int(frac * 60)) * 1000
                    self.hits.setdefault(ts // HOUR_MS, []).append((ts, order, side, level, notional))
                    break
            else:
                left.append(pos)
        entry[2] = left
        entry[3], entry[4] = _bounds(left)


def _bounds(positions: list[tuple]) -> tuple[float, float]:
    """(highest long level, lowest short level): a minute range whose low and high stay strictly between crosses
    none of the positions."""
    return (max((p[2] for p in positions if p[1] == "long"), default=-math.inf),
            min((p[2] for p in positions if p[1] == "short"), default=math.inf))


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
        """The events in [start_ms, end_ms), from hour-long chunks computed once (each from the symbol's tape)."""
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
