"""Closing signals: each cycle, the open signals' candles are fetched and evaluated (bot.evaluation); those that
closed are committed — and sealed — with the cycle (`Engine.run_once` asks before it commits).

Only symbols with open signals are fetched, oldest signals first, at most `evaluation.max_symbols_per_cycle`
symbols a cycle; per symbol two klines requests: the hourly candles for the ATR and trailing volatility (limit
under 100: weight 1) and the walk candles since its oldest open signal (weight 1–5 by limit). A symbol the
exchange no longer serves ("Invalid symbol") gets no candles, and its signals close as TIMEOUT with that reason.
A failed request leaves the symbol's signals open for the next cycle; nothing here ever fails a cycle.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Iterable

from . import performance
from .config import KLINE_INTERVALS, Config, EvaluationConfig
from .evaluation import HOUR_MS, Candle, Costs, FundingSample, Plan, SignalInput, evaluate
from .exchange.binance import BinanceClient, BinanceError, CycleStopped
from .records import Closing, StoredSignal
from .score import band_of
from .store import Store
from .vocabulary import SCORE_BANDS

log = logging.getLogger(__name__)

INVALID_SYMBOL = -1121
TRAILING_HOURS = 24                 # hourly candles before the entry for the trailing volatility


def plan_for(cfg: EvaluationConfig, kind: str) -> Plan:
    """The levels and life of a signal of this rule kind: the kind's overrides, else the defaults."""
    o = cfg.per_kind.get(kind)
    pick = (lambda name: getattr(o, name) if o is not None and getattr(o, name) is not None else getattr(cfg, name))
    return Plan(pick("tp_atr"), pick("sl_atr"), int(pick("timeout_hours") * HOUR_MS), cfg.atr_candles)


def costs_of(cfg: EvaluationConfig) -> Costs:
    return Costs(cfg.taker_fee_bps, cfg.slippage_bps)


def signal_input(sig: StoredSignal) -> SignalInput:
    """A stored signal as the evaluation reads it: its entry is the mark price its receipt holds."""
    raw = (sig.get("receipt") or {}).get("raw") or {}
    mark = raw.get("mark_price")
    return SignalInput(sig["id"], sig["ts"], sig["symbol"], sig["bias"], float(mark) if mark else None)


def funding_samples(payloads: Iterable[tuple[int, dict]]) -> list[FundingSample]:
    """The funding rates the bot stored for a symbol (its score rows), as the evaluation reads them."""
    return [FundingSample(ts, p["funding_rate"], p.get("funding_interval_hours") or 8.0)
            for ts, p in payloads if p.get("funding_rate") is not None]


@dataclass
class OutcomeTracker:
    cfg: EvaluationConfig
    store: Store
    client: BinanceClient

    async def closings(self, now_ms: int) -> list[Closing]:
        """The open signals that have closed by `now_ms` (exchange time), each with its closing record."""
        open_ = await asyncio.to_thread(self.store.open_signals)
        by_symbol: dict[str, list[StoredSignal]] = {}
        for sig in open_:                             # oldest first: a symbol's place is its oldest signal's
            by_symbol.setdefault(sig["symbol"], []).append(sig)
        symbols = list(by_symbol)[: self.cfg.max_symbols_per_cycle]
        # concurrently, within the client's shared limits (its concurrency cap and weight budget)
        fetched = await asyncio.gather(*(self._candles(sym, by_symbol[sym], now_ms) for sym in symbols),
                                       return_exceptions=True)
        out: list[Closing] = []
        for symbol, candles in zip(symbols, fetched):
            if isinstance(candles, CycleStopped):
                log.warning("closing signals: the exchange stopped this cycle's requests (%s); %s waits", candles,
                            symbol)
                continue
            if isinstance(candles, BinanceError):
                log.warning("closing signals: candles for %s failed (%s); its signals stay open", symbol, candles)
                continue
            if isinstance(candles, BaseException):
                raise candles
            payloads = await asyncio.to_thread(self.store.score_payloads, symbol,
                                               by_symbol[symbol][0]["ts"] - 8 * HOUR_MS)
            out += self.evaluate(by_symbol[symbol], *candles, funding_samples(payloads), now_ms)
        return out

    def evaluate(self, signals: list[StoredSignal], hourly: list[Candle], walk: list[Candle],
                 funding: list[FundingSample], now_ms: int) -> list[Closing]:
        step = KLINE_INTERVALS[self.cfg.walk_interval]
        out = []
        for sig in signals:
            closing = evaluate(signal_input(sig), plan_for(self.cfg, sig["kind"]), costs_of(self.cfg), hourly, walk,
                               step, funding, now_ms)
            if closing is not None:
                out.append(Closing(signal=sig["id"], outcome=closing))
        return out

    async def _candles(self, symbol: str, signals: list[StoredSignal], now_ms: int) -> tuple[list[Candle], list[Candle]]:
        """(hourly candles before the oldest signal, walk candles from it to now); empty for a symbol the exchange
        does not serve."""
        first = signals[0]["ts"]
        hours = max(self.cfg.atr_candles + 1, TRAILING_HOURS) + 1
        step = KLINE_INTERVALS[self.cfg.walk_interval]
        walk_limit = min(1500, max(1, (now_ms - first) // step + 2))
        try:
            hourly = await self.client.klines(symbol, "1h", limit=hours, end_time=first)
            walk = await self.client.klines(symbol, self.cfg.walk_interval, limit=walk_limit, start_time=first)
        except BinanceError as e:
            if e.code == INVALID_SYMBOL and not isinstance(e, CycleStopped):
                return [], []
            raise
        return ([Candle.from_binance(r, HOUR_MS) for r in hourly], [Candle.from_binance(r, step) for r in walk])


# ------------------------------------------------------------------------------------------- the report
DAY_MS = 24 * HOUR_MS


def performance_report(store: Store, cfg: Config, window_days: float, symbol: str | None = None) -> dict:
    """The performance report (bot.performance) of the signals closed in the last `window_days` (counted back from
    the last cycle's exchange time), one symbol's or all; the score-vs-move lens is always market-wide."""
    last = store.last_cycle()
    until = last["ts"] if last else 0
    since = until - int(window_days * DAY_MS)
    closed = store.closed_signals(since, symbol)
    _, latest = store.latest_scores()
    period = int(cfg.evaluation.move_period_hours * HOUR_MS)
    rows = [(ts, sym, score, ((json.loads(p).get("raw") or {}).get("mark_price")))
            for ts, sym, score, p in store.score_rows_at_period_starts(since, period)]
    rep = performance.report(closed, {r["symbol"]: r["score"] for r in latest})
    rep["score_vs_move"] = performance.score_vs_move(rows, period, lambda s: band_of(s, cfg.score), SCORE_BANDS)
    open_ = store.open_signals()
    rep.update(window_days=window_days, since=since, until=until, symbol=symbol,
               open=sum(1 for g in open_ if g["ts"] >= since and (symbol is None or g["symbol"] == symbol)))
    return rep
