"""Binance's public force-order stream (`<stream_url>/!forceOrder@arr`): realised liquidations, recorded.

aiohttp's websocket client (already a dependency, no second websocket library). The stream pushes at most one
liquidation per symbol per second (the latest in that second), so what it records is a floor of what happened.
A dropped connection is retried with a doubling, capped delay; when it is back, one log line names the gap
(liquidations inside it are lost: the stream has no replay) and `gaps` keeps it.

Side convention: `S=SELL` is the exchange selling a long position's contracts, i.e. a LONG was liquidated;
`S=BUY` a short.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Awaitable, Callable, Iterable

import aiohttp

from ..liqmap import Print

log = logging.getLogger(__name__)

STREAM = "!forceOrder@arr"
Sink = Callable[[list[Print]], Awaitable[None]]


class BadForceOrder(ValueError):
    """A message that is not a well-formed forceOrder event (the text says which field)."""


def parse_force_order(msg: dict) -> Print:
    """One `forceOrder` event -> a Print (`side` = the position liquidated). Raises BadForceOrder naming the field."""
    if not isinstance(msg, dict) or msg.get("e") != "forceOrder":
        raise BadForceOrder(f"not a forceOrder event: e={msg.get('e') if isinstance(msg, dict) else msg!r}")
    o = msg.get("o")
    if not isinstance(o, dict):
        raise BadForceOrder("forceOrder without its order object 'o'")
    side = {"SELL": "long", "BUY": "short"}.get(o.get("S"))
    if side is None:
        raise BadForceOrder(f"forceOrder {o.get('s')}: side S={o.get('S')!r} is neither BUY nor SELL")
    try:
        price = float(o.get("ap") or 0) or float(o["p"])           # the average fill price, else the order price
        qty = float(o.get("z") or 0) or float(o["q"])               # the filled quantity, else the order's
        ts = int(o["T"])
        symbol = str(o["s"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadForceOrder(f"forceOrder {o.get('s')}: bad or missing field {e}") from None
    if price <= 0 or qty <= 0:
        raise BadForceOrder(f"forceOrder {symbol}: price {price} and quantity {qty} must be positive")
    return Print(ts, symbol, side, price, qty)


class ForceOrderRecorder:
    """Connects, reads, hands batches of Prints of the wanted symbols to `sink`; reconnects with back-off."""

    def __init__(self, stream_url: str, symbols: Iterable[str], sink: Sink, *, backoff_s: tuple[float, float] = (1, 60),
                 flush_s: float = 1.0, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.url = stream_url.rstrip("/") + "/" + STREAM
        self.symbols = set(symbols)
        self.sink, self.backoff_s, self.flush_s, self.now_ms = sink, backoff_s, flush_s, now_ms
        self.gaps: list[tuple[int, int]] = []        # (lost at, back at) ms: liquidations in them were not seen
        self.connections = 0
        self.received = 0
        self.connected = asyncio.Event()
        self._batch: list[Print] = []             # received, not yet handed to the sink (every flush_s)

    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_every())
        try:
            await self._run()
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            await self._flush()

    async def _run(self) -> None:
        delay = self.backoff_s[0]
        lost_at: int | None = None
        async with aiohttp.ClientSession() as session:
            while True:
                up = False
                try:
                    async with session.ws_connect(self.url, heartbeat=60) as ws:
                        up = True
                        self.connections += 1
                        if lost_at is not None:
                            back = self.now_ms()
                            self.gaps.append((lost_at, back))
                            log.warning("force-order stream back after %.1f s: liquidations between %d and %d ms "
                                        "are lost (the stream has no replay)", (back - lost_at) / 1000, lost_at, back)
                            lost_at = None
                        else:
                            log.info("force-order stream connected: %s", self.url)
                        self.connected.set()
                        delay = self.backoff_s[0]
                        await self._read(ws)
                    why = "closed by the server"
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                    why = f"{type(e).__name__}: {e}"
                self.connected.clear()
                if up:
                    lost_at = self.now_ms()
                log.warning("force-order stream lost (%s); reconnecting in %.1f s", why, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Until the connection ends. (No receive timeout: aiohttp marks a socket closed when one expires.)"""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._take(msg.data)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self._flush()

    async def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            await self.sink(batch)

    def _take(self, text: str) -> None:
        try:
            p = parse_force_order(json.loads(text))
        except (BadForceOrder, json.JSONDecodeError) as e:
            log.warning("force-order stream: skipped a message: %s", e)
            return
        self.received += 1
        if p.symbol in self.symbols:
            self._batch.append(p)
