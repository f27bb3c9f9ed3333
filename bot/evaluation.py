"""Closed signals: each alert evaluated as a trader would, on exchange candles (pure: no I/O).

A signal opens at the mark price of its cycle (`entry`). Its direction is the bias at that moment: LONG +1,
SHORT -1. Two trades are evaluated from the same entry, each with its own levels in units of the symbol's
ATR (true range of the `atr_candles` 1h candles before the entry):

- **follow**: in the bias's direction, TP1 at entry + d·tp·ATR, SL at entry − d·sl·ATR;
- **fade**: against it, TP1 at entry − d·tp·ATR, SL at entry + d·sl·ATR.

Each walks the candles that open at or after the entry (finer ones, e.g. 5m: `walk_interval`) and closes at the
first candle that touches a level, else at TIMEOUT (the last close before entry + timeout). The signal closes when
both trades have; its status is the follow trade's.

Tie rule (conservative, one rule for both trades): a candle whose range touches both TP1 and SL closes at SL.
A candle that opens beyond the SL (a gap) fills at its open, not at the level; one that opens beyond TP1 fills
at TP1 (no gap bonus). A candle gapping through both is therefore an SL at its open.

A NEUTRAL signal has no direction: no follow or fade trade, only the move lens (excursions, realised vol); it
closes as TIMEOUT at entry + timeout and counts in no win rate.

Net bps = d·(exit/entry − 1)·10⁴ − 2·(taker fee + slippage) − funding paid (d·rate·10⁴ at each funding time in
(entry, exit], the rate the bot stored for the symbol at or before that time; long pays a positive rate).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

HOUR_MS = 3_600_000
Status = Literal["TP1", "SL", "TIMEOUT"]
DIRECTIONS = {"LONG": 1, "SHORT": -1}


@dataclass(frozen=True, slots=True)
class Candle:
    open_time: int          # ms
    open: float
    high: float
    low: float
    close: float
    close_time: int         # ms (open_time + interval)

    @classmethod
    def from_binance(cls, row: Sequence, step_ms: int) -> Candle:
        """A /fapi/v1/klines row: [openTime, open, high, low, close, volume, closeTime, ...] (prices as strings)."""
        return cls(int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), int(row[0]) + step_ms)


@dataclass(frozen=True, slots=True)
class Costs:
    """The fee model, per side, in basis points."""
    taker_fee_bps: float
    slippage_bps: float

    @property
    def round_trip_bps(self) -> float:
        return 2 * (self.taker_fee_bps + self.slippage_bps)


@dataclass(frozen=True, slots=True)
class Plan:
    """How one signal is evaluated: its levels' multipliers and its life."""
    tp_atr: float
    sl_atr: float
    timeout_ms: int
    atr_candles: int = 14   # true ranges averaged (the hourly candles before the entry; one more gives the first)


@dataclass(frozen=True, slots=True)
class FundingSample:
    """A funding rate the bot stored (a cycle's score row) and the interval it settles at."""
    ts: int
    rate: float
    interval_hours: float


@dataclass(frozen=True, slots=True)
class Exit:
    status: Status
    ts: int                 # ms: the closing candle's close time (TIMEOUT: the last candle's)
    price: float | None     # None: no candle at all
    reason: str | None = None


# ------------------------------------------------------------------------------------------- pieces
def atr(candles: Sequence[Candle]) -> float | None:
    """Mean true range (Wilder's TR, simple mean) of the candles; None with fewer than two."""
    if len(candles) < 2:
        return None
    trs = [max(c.high - c.low, abs(c.high - p.close), abs(c.low - p.close)) for p, c in zip(candles, candles[1:])]
    return sum(trs) / len(trs)


def levels(entry: float, direction: int, atr_value: float, plan: Plan) -> tuple[float, float]:
    """(TP1, SL) prices of a trade in `direction` (+1 long, -1 short)."""
    return entry + direction * plan.tp_atr * atr_value, entry - direction * plan.sl_atr * atr_value


def walk(direction: int, tp: float, sl: float, candles: Sequence[Candle], deadline: int) -> Exit | None:
    """The first candle (opening before `deadline`) touching a level closes the trade (tie rule: SL first; a gap
    beyond the SL fills at the open, beyond TP1 at TP1). None: no level touched in these candles."""
    for c in candles:
        if c.open_time >= deadline:
            break
        hit_sl = c.low <= sl if direction > 0 else c.high >= sl
        hit_tp = c.high >= tp if direction > 0 else c.low <= tp
        if hit_sl:
            gapped = c.open <= sl if direction > 0 else c.open >= sl
            why = "gap through the SL: filled at the open" if gapped else (
                "the candle touched both TP1 and SL: SL first (tie rule)" if hit_tp else None)
            return Exit("SL", c.close_time, c.open if gapped else sl, why)
        if hit_tp:
            return Exit("TP1", c.close_time, tp)
    return None


def missing_candles(candles: Sequence[Candle], step_ms: int, start: int, end: int) -> int:
    """How many candles of [start, end) the exchange did not return (gaps, a late first, an early last)."""
    start = -(-start // step_ms) * step_ms          # the first candle opening at or after `start`
    if end <= start:
        return 0
    expected = (end - start + step_ms - 1) // step_ms
    have = sum(1 for c in candles if start <= c.open_time < end)
    return max(0, expected - have)


def funding_bps(direction: int, entry_ts: int, exit_ts: int, samples: Sequence[FundingSample]) -> float:
    """Funding paid (positive) or received (negative) in bps by a position in `direction` held over
    (entry_ts, exit_ts]: at each settlement time (a multiple of the interval, UTC), the rate stored at or before
    it (or, none yet, the first stored), on the entry notional."""
    if direction == 0 or not samples or exit_ts <= entry_ts:
        return 0.0
    samples = sorted(samples, key=lambda s: s.ts)
    paid, t = 0.0, entry_ts
    while True:
        current = _sample_at(samples, t)
        step = int(current.interval_hours * HOUR_MS) or 8 * HOUR_MS
        t = (t // step + 1) * step                  # the next settlement after t
        if t > exit_ts:
            return paid
        paid += direction * _sample_at(samples, t).rate * 1e4


def _sample_at(samples: Sequence[FundingSample], t: int) -> FundingSample:
    before = [s for s in samples if s.ts <= t]
    return before[-1] if before else samples[0]


def net_bps(direction: int, entry: float, exit_price: float, costs: Costs, funding_paid_bps: float) -> float:
    gross = direction * (exit_price / entry - 1) * 1e4
    return gross - costs.round_trip_bps - funding_paid_bps


def excursions(entry: float, candles: Iterable[Candle], until: int) -> tuple[float | None, float | None]:
    """(largest move up, largest move down) in bps from the entry, over candles opening before `until`."""
    seen = [c for c in candles if c.open_time < until]
    if not seen:
        return None, None
    return (max(c.high for c in seen) / entry - 1) * 1e4, (min(c.low for c in seen) / entry - 1) * 1e4


def vol_per_sqrt_hour(candles: Sequence[Candle], step_ms: int) -> float | None:
    """Realised volatility: stdev of log close-to-close returns scaled to one hour (None: under 3 candles)."""
    closes = [c.close for c in candles if c.close > 0]
    if len(closes) < 3:
        return None
    rets = [math.log(b / a) for a, b in zip(closes, closes[1:])]
    return statistics.pstdev(rets) / math.sqrt(step_ms / HOUR_MS)


# ------------------------------------------------------------------------------------------- one signal
@dataclass(frozen=True)
class SignalInput:
    id: str
    ts: int
    symbol: str
    bias: str
    entry: float | None           # the mark price of its cycle


VOL_WINDOWS_H = (1, 4, 24)


def evaluate(sig: SignalInput, plan: Plan, costs: Costs, atr_candles: Sequence[Candle], walk_candles: Sequence[Candle],
             walk_step_ms: int, funding: Sequence[FundingSample], now: int) -> dict | None:
    """The signal's closing record, or None while it is still open at `now` (exchange time, ms).

    `atr_candles`: the hourly candles that closed at or before the entry (trailing volatility, ATR);
    `walk_candles`: candles from the entry on (only those closed by `now` are used)."""
    deadline = sig.ts + plan.timeout_ms
    closed = [c for c in walk_candles if c.open_time >= sig.ts and c.close_time <= now]
    direction = DIRECTIONS.get(sig.bias, 0)
    base = {"signal": sig.id, "symbol": sig.symbol, "bias": sig.bias, "opened": sig.ts, "entry": sig.entry}
    if sig.entry is None or sig.entry <= 0:
        return None if now < deadline else _closing(base, Exit("TIMEOUT", now, None, "no mark price stored with the "
                                                                                      "signal"), None, None, None)
    a = atr([c for c in atr_candles if c.close_time <= sig.ts][-(plan.atr_candles + 1):])
    if direction and a is None and now < deadline:
        return None                  # no ATR yet: levels unknown; wait (the timeout still closes it)
    trades = {}
    if direction and a:
        for name, d in (("follow", direction), ("fade", -direction)):
            tp, sl = levels(sig.entry, d, a, plan)
            trades[name] = (d, tp, sl, walk(d, tp, sl, closed, deadline))
    follow_exit = trades["follow"][3] if trades else None
    if now < deadline and (not trades or any(t[3] is None for t in trades.values())):
        return None                  # open until both trades have closed (or the timeout)
    timeout = _timeout_exit(closed, deadline, walk_step_ms, now, sig.symbol)
    result = {}
    for name, (d, tp, sl, ex) in trades.items():
        ex = ex or timeout
        paid = funding_bps(d, sig.ts, ex.ts, funding)
        result[name] = {"direction": "LONG" if d > 0 else "SHORT", "tp1": _p(tp), "sl": _p(sl), "status": ex.status,
                        "exit": _p(ex.price), "exit_ts": ex.ts, "reason": ex.reason,
                        "funding_bps": round(paid, 3),
                        "net_bps": round(net_bps(d, sig.entry, ex.price, costs, paid), 3) if ex.price else None}
    close = follow_exit or timeout
    if direction and a is None and timeout.price is not None:
        close = Exit("TIMEOUT", timeout.ts, timeout.price, "no ATR: the exchange returned under two hourly candles "
                                                           "before the entry")
    lens = _move_lens(sig.entry, closed, close.ts, walk_step_ms, atr_candles, sig.ts)
    return _closing(base, close, a, result, lens, missing_candles(
        closed, walk_step_ms, sig.ts, deadline if close.status == "TIMEOUT" else close.ts))


def _timeout_exit(closed: Sequence[Candle], deadline: int, step_ms: int, now: int, symbol: str) -> Exit:
    life = [c for c in closed if c.open_time < deadline]
    if not life:
        return Exit("TIMEOUT", min(deadline, now), None,
                    f"no candles for {symbol} after the entry (delisted or not served)")
    last = life[-1]
    if last.close_time < deadline - step_ms:
        return Exit("TIMEOUT", last.close_time, last.close, f"the candles end {_span(deadline - last.close_time)} "
                                                            "before the timeout (delisted?): closed at the last close")
    return Exit("TIMEOUT", last.close_time, last.close)


def _move_lens(entry: float, closed: Sequence[Candle], until: int, step_ms: int, trailing: Sequence[Candle],
               entry_ts: int) -> dict:
    up, down = excursions(entry, closed, until)
    before = [c for c in trailing if c.close_time <= entry_ts][-24:]
    trailing_vol = vol_per_sqrt_hour(before, HOUR_MS)
    vols = {}
    for h in VOL_WINDOWS_H:
        window = [c for c in closed if c.open_time < entry_ts + h * HOUR_MS]
        covered = bool(window) and window[-1].close_time >= entry_ts + h * HOUR_MS
        v = vol_per_sqrt_hour(window, step_ms) if covered else None
        vols[f"{h}h"] = {"vol": _r(v), "ratio": _r(v / trailing_vol) if v is not None and trailing_vol else None}
    return {"max_up_bps": _r(up, 2), "max_down_bps": _r(down, 2), "trailing_vol_24h": _r(trailing_vol),
            "realised_vol": vols}


def _closing(base: dict, close: Exit, a: float | None, trades: dict | None, lens: dict | None,
             missing: int = 0) -> dict:
    """The closing record (stored as the signal's outcome, sealed in the cycle that closes it)."""
    return {**base, "status": close.status, "closed": close.ts, "exit": _p(close.price), "reason": close.reason,
            "atr_1h": _p(a), "follow": (trades or {}).get("follow"), "fade": (trades or {}).get("fade"),
            "move": lens, "missing_candles": missing}


def _p(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.10g}")


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _span(ms: int) -> str:
    h = ms / HOUR_MS
    return f"{h:.1f} h" if h >= 1 else f"{ms / 60_000:.0f} min"
