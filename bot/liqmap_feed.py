"""LiqMap's inputs: candles with taker-buy volume and open interest per step, fetched every `refresh_minutes` for
the LiqMap symbols (its own scheduler job, apart from the scoring cycle), and the force-order stream recorded from
the first run. Both stored with bounded retention (`history_days`).

Exchange budget of one refresh, per symbol: one /fapi/v1/klines request with limit < 100 (weight 1) and one
/futures/data/openInterestHist request (weight 0; one of the 1000 allowed per 5 minutes). So a refresh of the
default two symbols costs weight 2 (of 2400 a minute) and 2 data requests. The first run backfills `history_days`:
at 5-minute steps a week is 2016 candles (two klines requests of limit 1500, weight 10 each) and five
openInterestHist pages per symbol.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from .config import Config, LiqMapConfig
from .exchange.binance import BinanceClient, kline_weight
from .exchange.force_orders import ForceOrderRecorder
from .liqmap import Params, Print, Step
from .store import Store

log = logging.getLogger(__name__)

DEFAULT_STREAM_URL = LiqMapConfig.model_fields["stream_url"].default
INTERVAL_MS = {"5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000}
KLINES_PAGE = 1500
OI_PAGE = 500


def join_steps(klines: list[list], oi_hist: list[dict], step_ms: int) -> list[Step]:
    """Candle rows + openInterestHist points -> Steps; a candle's OI is the point at its close (None if absent)."""
    oi_at = {int(p["timestamp"]): float(p["sumOpenInterest"]) for p in oi_hist}
    return [Step(int(k[0]), float(k[1]), float(k[2]), float(k[3]), float(k[4]), float(k[5]), float(k[7]),
                 float(k[10]), oi_at.get(int(k[0]) + step_ms)) for k in klines]


@dataclass
class Cost:
    """What requests cost (counted here: the client's own statistics are reset by every scoring cycle)."""
    weight: int = 0
    requests: int = 0


async def fetch_steps(client: BinanceClient, symbol: str, interval: str, since_ms: int, until_ms: int,
                      cost: Cost | None = None) -> list[Step]:
    """Candles and OI from `since_ms` to `until_ms`, paged (klines 1500, openInterestHist 500 a request)."""
    cost = cost if cost is not None else Cost()
    step = INTERVAL_MS[interval]
    klines: list[list] = []
    start = since_ms
    while start <= until_ms:
        need = (until_ms - start) // step + 1
        limit = min(KLINES_PAGE, max(1, need))
        page = await client.klines(symbol, interval, limit=limit, start_time=start)
        cost.weight += kline_weight(limit)
        cost.requests += 1
        if not page:
            break
        klines += page
        start = int(page[-1][0]) + step
        if len(page) < min(KLINES_PAGE, need):
            break
    oi: list[dict] = []
    start = since_ms + step                 # the first candle's close
    while start <= until_ms + step:
        need = (until_ms + step - start) // step + 1
        page = await client.open_interest_hist(symbol, interval, limit=min(OI_PAGE, max(1, need)), start_time=start)
        cost.requests += 1                  # weight 0; counts toward the 1000 data requests per 5 minutes
        if not page:
            break
        oi += page
        start = int(page[-1]["timestamp"]) + step
        if len(page) < min(OI_PAGE, need):
            break
    return join_steps(klines, oi, step)


def stream_url_for(configured: str, exchange_url: str) -> str:
    """The force-order stream root: as configured, except that with the default (Binance's) and an exchange root
    that is not Binance's — the simulator on loopback — the stream is that server's own `/ws`."""
    if configured != DEFAULT_STREAM_URL or urlsplit(exchange_url).hostname == "fapi.binance.com":
        return configured
    parts = urlsplit(exchange_url)
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws"


@dataclass
class RefreshReport:
    symbols: int
    steps: int
    weight: int
    requests: int


async def refresh(cfg: Config, client: BinanceClient, store: Store, now_ms: int | None = None) -> RefreshReport:
    """One refresh: per LiqMap symbol, from its newest complete step (or `history_days` back) to now."""
    lc = cfg.liqmap
    step = INTERVAL_MS[lc.interval]
    now = int(time.time() * 1000) if now_ms is None else now_ms
    cost = Cost()
    total = 0
    for symbol in lc.symbols:
        last = await asyncio.to_thread(store.last_liq_step, symbol)
        since = last if last is not None else (now - int(lc.history_days * 86_400_000)) // step * step
        steps = await fetch_steps(client, symbol, lc.interval, since, now, cost)
        total += await asyncio.to_thread(store.add_liq_steps, symbol, steps)
    await asyncio.to_thread(store.prune_liq, now - int(lc.history_days * 86_400_000))
    return RefreshReport(len(lc.symbols), total, cost.weight, cost.requests)


def stored_view(cfg: Config, store: Store, symbol: str, window: str):
    """The map of `window` (a `bot.liqmap.view.View`) from what the store holds (steps with warm-up, recorded
    prints). numpy (the heatmap grid) is imported on the first map, as matplotlib is on the first /chart."""
    from .liqmap.view import WARM_UP_MS, build, window_ms
    last = store.last_liq_step(symbol)
    if last is None:
        raise LookupError(f"no LiqMap data for {symbol} yet: it is refreshed every few minutes for "
                          "the symbols in liqmap.symbols")
    since = last - window_ms(window) - WARM_UP_MS
    return build(symbol, window, store.liq_steps(symbol, since), store.liq_prints(symbol, since),
                 Params.from_config(cfg.liqmap), cfg.liqmap.top_fraction)


class LiqMapFeed:
    """The refresh job and the force-order recorder of a running bot."""

    def __init__(self, cfg: Config, client: BinanceClient, store: Store, stream_url: str | None = None) -> None:
        self.cfg, self.client, self.store = cfg, client, store
        self.recorder = ForceOrderRecorder(stream_url or cfg.liqmap.stream_url, cfg.liqmap.symbols, self._record)
        self._task: asyncio.Task | None = None
        self.last: RefreshReport | None = None
        self.proximity: Callable[[], int] | None = None      # after each refresh: the watchlists' proximity rule
        self.on_queued: Callable[[], None] | None = None      # it queued alerts (the app wakes the delivery worker)

    async def _record(self, prints: list[Print]) -> None:
        await asyncio.to_thread(self.store.add_liq_prints, prints)

    async def scheduled_refresh(self) -> None:
        """The scheduler's job: errors are logged, the next refresh retries."""
        try:
            self.last = await refresh(self.cfg, self.client, self.store)
            log.info("liqmap refresh: %d symbols, %d steps, weight %d in %d requests", self.last.symbols,
                     self.last.steps, self.last.weight, self.last.requests)
        except Exception as e:
            log.warning("liqmap refresh failed (the next one retries): %s", e)
            return
        if self.proximity is not None:
            try:
                if await asyncio.to_thread(self.proximity) and self.on_queued is not None:
                    self.on_queued()
            except Exception:
                log.exception("liqmap proximity alerts failed (the next refresh checks again)")

    def start_recording(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.recorder.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
