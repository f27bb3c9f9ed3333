"""One market cycle: fetch from the exchange, keep OI history, build the score inputs.

Steady state costs N+2 requests (premiumIndex, ticker/24hr, one openInterest per symbol); the
universe (exchangeInfo) and funding intervals (fundingInfo) are refreshed hourly, and at once when
premiumIndex names a symbol the last exchangeInfo did not account for (a new listing is scored in the
cycle it first trades in); openInterestHist backfills symbols whose stored history is missing, stale or
shorter than the window (cold start, new listings), once — a failing backfill is retried with a
per-symbol exponential back-off, not every cycle.
Every number is checked where its reply is parsed: finite and in its domain (prices > 0, OI and
volume >= 0, |funding| <= 5 % per interval, 24h change >= -100 %, nothing near 1e308). A bad value drops
that symbol for this cycle, named with its reason in `CycleData.failed` and the log, never the cycle.
A `CycleStopped` from the client (the exchange refusing us) ends the cycle: no further per-symbol requests.
Times are the exchange's own (premiumIndex `time`), so a simulated clock works the same as the real one.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import statistics
from dataclasses import dataclass, field
from typing import Protocol

from .clock import SYSTEM_CLOCK, Clock
from .config import Config
from .exchange.binance import BinanceClient, BinanceError, CycleStopped
from .progress import Progress
from .records import MarketReceipt, OIPoint
from .score import ScoreInputs

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
HORIZONS_H = {"1h": 1, "4h": 4, "24h": 24}
MAX_ABS_FUNDING = 0.05        # per interval; Binance's caps run from ±0.3 % to ±3 %: 5 % is no market's rate
MAX_MAGNITUDE = 1e15          # no price, OI or volume is this large; 1e308 is garbage, not a number to score
BACKFILL_RETRY_S = 300.0      # a failed backfill is retried after 5 min, then 10, 20 ... up to 6 h
BACKFILL_RETRY_MAX_S = 6 * 3600.0
STATUS_ENDING = {"PRE_DELIVERING", "DELIVERING", "DELIVERED", "PRE_SETTLE", "SETTLING", "CLOSE"}

# domain -> (low, low is exclusive, high, what it must be)
_DOMAINS = {
    "price": (0.0, True, MAX_MAGNITUDE, f"a price in (0, {MAX_MAGNITUDE:.0e}]"),
    "amount": (0.0, False, MAX_MAGNITUDE, f"an amount in [0, {MAX_MAGNITUDE:.0e}]"),
    "funding": (-MAX_ABS_FUNDING, False, MAX_ABS_FUNDING, f"a funding rate within ±{MAX_ABS_FUNDING:.0%} per interval"),
    "pct": (-100.0, False, 1e6, "a change in percent in [-100, 1e+06]"),
    "hours": (0.0, True, 24.0, "a funding interval of (0, 24] hours"),
}


@dataclass
class CycleData:
    ts: int                                   # exchange time of this snapshot (ms)
    inputs: list[ScoreInputs]
    raw: dict[str, MarketReceipt]             # symbol -> the exact values the inputs came from (receipts)
    failed: dict[str, str] = field(default_factory=dict)   # symbol (or endpoint) -> why
    universe_size: int = 0


def _f(entry: dict, key: str) -> float:
    try:
        return float(entry[key])
    except KeyError:
        raise ValueError(f"missing {key!r}") from None
    except (TypeError, ValueError):
        raise ValueError(f"{key!r} is not a number: {entry.get(key)!r}") from None


def _value(entry: dict, key: str, domain: str) -> float:
    """A number from a reply, finite and in its domain, else ValueError naming the field and the value."""
    x = _f(entry, key)
    low, open_low, high, what = _DOMAINS[domain]
    if not (math.isfinite(x) and (x > low if open_low else x >= low) and x <= high):
        raise ValueError(f"{key} {entry.get(key)!r} is not {what}")
    return x


def _time(entry: dict, key: str) -> int:
    """An exchange time in ms: a positive whole number."""
    raw = entry.get(key) if isinstance(entry, dict) else None
    try:
        t = int(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
    except ValueError:
        t = None
    if t is None or not 0 < t < 10**14:
        raise ValueError(f"{key} {raw!r} is not a time in ms")
    return t


def _check_finite(inp: ScoreInputs) -> None:
    """The derived inputs too (a ratio of two valid numbers can still overflow)."""
    for f in dataclasses.fields(inp):
        v = getattr(inp, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{f.name} comes out as {v} from the reported values")


async def _all(*aws):
    """asyncio.gather that cancels the others when one fails: a stopped cycle leaves nothing running
    (an orphaned retry would carry on into the next cycle)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _named(failed: dict[str, str], limit: int = 10) -> str:
    items = sorted(failed.items())
    text = "; ".join(f"{s}: {why}" for s, why in items[:limit])
    return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def eligible_symbols(info: dict, cfg: Config) -> list[str]:
    """PERPETUAL, TRADING, quoted in the configured asset; include/exclude applied."""
    u = cfg.universe
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise BinanceError("exchangeInfo: malformed reply (no 'symbols' list)", path="/fapi/v1/exchangeInfo")
    out = [s["symbol"] for s in info["symbols"]
           if isinstance(s, dict) and s.get("contractType") == "PERPETUAL" and s.get("status") == "TRADING"
           and s.get("quoteAsset") == u.quote_asset]
    if u.include:
        out = [s for s in out if s in set(u.include)]
    excluded = set(u.exclude)
    return sorted(s for s in out if s not in excluded)


def accounted_symbols(info: dict, cfg: Config) -> set[str]:
    """Symbols exchangeInfo accounts for: eligible, or out of our universe for good (another contract
    type or quote asset, include/exclude, delivering or settled). Left out: a perpetual in our quote that is
    not trading *yet* — when premiumIndex names a symbol outside this set, the universe is refreshed."""
    u = cfg.universe
    out = set()
    for s in info.get("symbols", []) if isinstance(info, dict) else []:
        if not isinstance(s, dict) or not isinstance(s.get("symbol"), str):
            continue
        sym = s["symbol"]
        ours = (s.get("contractType") == "PERPETUAL" and s.get("quoteAsset") == u.quote_asset
                and (not u.include or sym in u.include) and sym not in u.exclude)
        if not ours or s.get("status") == "TRADING" or s.get("status") in STATUS_ENDING:
            out.add(sym)
    return out


def nearest(points: list[OIPoint], target_ms: int, tolerance_ms: float) -> OIPoint | None:
    """The stored point nearest the target time, if within tolerance (none -> missing, never zero)."""
    best = min(points, key=lambda p: abs(p.ts - target_ms), default=None)
    if best is None or abs(best.ts - target_ms) > tolerance_ms:
        return None
    return best


def change(now: float | None, then: float | None) -> float | None:
    if now is None or then is None or then == 0:
        return None
    return now / then - 1


class HistoryStore(Protocol):
    """Where the collector keeps its OI history (the engine's store): the market layer names what it
    needs instead of importing the storage layer above it."""

    def add_oi_points(self, points: list[OIPoint]) -> int: ...
    def history_coverage(self) -> dict[str, tuple[int, int]]: ...
    def oi_points_between(self, start_ms: int, end_ms: int) -> list[OIPoint]: ...


class MarketCollector:
    def __init__(self, client: BinanceClient, store: HistoryStore, cfg: Config, clock: Clock | None = None):
        self.client, self.store, self.cfg = client, store, cfg
        # the refresh interval is timed on the client's clock unless told otherwise (one clock in tests)
        self.clock: Clock = clock or getattr(client, "clock", None) or SYSTEM_CLOCK
        self._universe: list[str] = []
        self._accounted: set[str] = set()            # every symbol the last exchangeInfo accounts for
        self._intervals: dict[str, float] = {}
        self._bad_intervals: dict[str, str] = {}     # symbol -> why its fundingInfo entry was unusable
        self._refreshed_at = -1e18     # clock.monotonic() of the last universe/fundingInfo refresh
        self._backfilled: set[str] = set()           # backfilled in this process (a new listing: what exists)
        self._backfill_failures: dict[str, int] = {}   # symbol -> failed backfills in a row
        self._backfill_after: dict[str, float] = {}    # symbol -> clock.monotonic() before which it is not retried

    @property
    def universe(self) -> list[str]:
        """Eligible symbols as of the last exchangeInfo refresh."""
        return list(self._universe)

    async def refresh_reference_data(self, force: bool = False) -> None:
        """exchangeInfo + fundingInfo, at most hourly (both change rarely) unless forced (a new listing)."""
        if not force and self.clock.monotonic() - self._refreshed_at < self.cfg.exchange.funding_info_refresh_s:
            return
        info, funding = await _all(self.client.exchange_info(), self.client.funding_info())
        universe = eligible_symbols(info, self.cfg)
        if not isinstance(funding, list):
            raise BinanceError("fundingInfo: malformed reply (expected a list)", path="/fapi/v1/fundingInfo")
        intervals, bad = {}, {}
        for f in funding:
            if isinstance(f, dict) and isinstance(f.get("symbol"), str) and "fundingIntervalHours" in f:
                try:
                    intervals[f["symbol"]] = _value(f, "fundingIntervalHours", "hours")
                except ValueError as e:
                    bad[f["symbol"]] = f"fundingInfo: {e}"
        new = sorted(set(universe) - set(self._universe)) if self._universe else []
        if new:
            log.info("universe: %d new symbol(s): %s", len(new), ", ".join(new[:20]))
        self._universe, self._accounted = universe, accounted_symbols(info, self.cfg)
        self._intervals, self._bad_intervals = intervals, bad
        self._refreshed_at = self.clock.monotonic()

    async def warm_up(self, progress: Progress | None = None) -> dict[str, str]:
        """Cold start, before the first scheduled cycle: backfill history for the liquid universe."""
        await self.refresh_reference_data(force=True)
        premium, tickers = await _all(self.client.premium_index(), self.client.ticker_24hr())
        premium = _by_symbol(premium, "premiumIndex")
        symbols = [s for s in self._liquid(_by_symbol(tickers, "ticker/24hr"), {}) if s in premium]
        ts = self._market_time(premium, symbols, {})
        return await self.backfill(symbols, ts, progress)

    async def collect(self, progress: Progress | None = None) -> CycleData:
        await self.refresh_reference_data()
        # the stored history's coverage (for the backfill check) is read while the market replies are on their way
        premium, tickers, coverage = await _all(self.client.premium_index(), self.client.ticker_24hr(),
                                                asyncio.to_thread(self.store.history_coverage))
        premium = _by_symbol(premium, "premiumIndex")
        tickers = _by_symbol(tickers, "ticker/24hr")
        unaccounted = sorted(set(premium) - self._accounted)
        if unaccounted:          # a new listing (or one about to trade): into the universe this cycle
            log.info("premiumIndex names %d symbol(s) exchangeInfo did not (%s): refreshing the universe",
                     len(unaccounted), ", ".join(unaccounted[:10]))
            try:
                await self.refresh_reference_data(force=True)
            except CycleStopped:
                raise
            except BinanceError as e:       # the known universe still scores; the refresh is tried next cycle
                log.warning("universe refresh failed, scoring the known universe: %s", e)
        failed: dict[str, str] = {}
        symbols = self._liquid(tickers, failed)
        ts = self._market_time(premium, symbols, failed)

        await self.backfill([s for s in symbols if s in premium], ts, progress, coverage)
        oi_now = await self._fetch_open_interest(symbols, failed)
        points = []
        for s, (oi, oi_ts) in oi_now.items():
            try:
                points.append(OIPoint(s, oi_ts, oi, _value(premium[s], "markPrice", "price")))
            except (KeyError, ValueError):
                points.append(OIPoint(s, oi_ts, oi, None))
        await asyncio.to_thread(self.store.add_oi_points, points)

        inputs, raw = await asyncio.to_thread(self._build_inputs, symbols, premium, tickers, oi_now, ts, failed)
        if failed:
            log.warning("%d symbol(s) dropped this cycle: %s", len(failed), _named(failed))
        return CycleData(ts=ts, inputs=inputs, raw=raw, failed=failed, universe_size=len(symbols))

    def _market_time(self, premium: dict[str, dict], symbols: list[str], failed: dict[str, str]) -> int:
        """The snapshot's exchange time: the latest premiumIndex `time` among the symbols. One symbol's bad
        time (not a time, or hours away from the others') drops that symbol, not everyone's windows."""
        times: dict[str, int] = {}
        for s in symbols:
            if s in premium:
                try:
                    times[s] = _time(premium[s], "time")
                except ValueError as e:
                    failed[s] = f"premiumIndex: {e}"
        if times:
            mid = statistics.median_low(times.values())
            for s, t in list(times.items()):
                if abs(t - mid) > HOUR_MS:
                    failed[s] = f"premiumIndex: time {t} is {abs(t - mid) / HOUR_MS:.0f}h away from the market's"
                    del times[s]
        return max(times.values(), default=0) or int(self.clock.time() * 1000)

    def _liquid(self, tickers: dict[str, dict], failed: dict[str, str]) -> list[str]:
        floor = self.cfg.universe.min_quote_volume
        out = []
        for s in self._universe:
            if s not in tickers:
                continue   # no ticker -> not tradable now
            try:
                if _value(tickers[s], "quoteVolume", "amount") >= floor:
                    out.append(s)
            except ValueError as e:
                failed[s] = f"ticker/24hr: {e}"    # unknowable liquidity: named, not silently left out
        return out

    async def _fetch_open_interest(self, symbols: list[str], failed: dict[str, str]) -> dict[str, tuple[float, int]]:
        sem = asyncio.Semaphore(self.cfg.exchange.max_concurrency)
        out: dict[str, tuple[float, int]] = {}
        stopped: list[CycleStopped] = []

        async def one(sym: str) -> None:
            async with sem:
                if stopped:
                    return                   # the exchange refused: no more per-symbol requests this cycle
                try:
                    body = await self.client.open_interest(sym)
                    out[sym] = (_value(body, "openInterest", "amount"), _time(body, "time"))
                except CycleStopped as e:
                    stopped.append(e)
                except BinanceError as e:
                    failed[sym] = str(e)
                except (ValueError, KeyError, TypeError) as e:
                    failed[sym] = f"/fapi/v1/openInterest ({sym}): malformed reply: {e}"

        await asyncio.gather(*(one(s) for s in symbols))
        if stopped:
            raise stopped[0]
        return out

    def _backfill_due(self, sym: str, coverage: dict[str, tuple[int, int]], now_ms: int) -> bool:
        """Backfill a symbol whose stored history is missing, stale (we were away) or — once per process —
        shorter than the window (a new listing has what exists); never while its back-off runs."""
        if self.clock.monotonic() < self._backfill_after.get(sym, -math.inf):
            return False
        cov = coverage.get(sym)
        if cov is None or cov[1] < now_ms - 2 * HOUR_MS:
            return True
        return sym not in self._backfilled and cov[0] > now_ms - (self.cfg.history.backfill_hours - 1) * HOUR_MS

    def _backfill_failed(self, sym: str) -> float:
        n = self._backfill_failures[sym] = self._backfill_failures.get(sym, 0) + 1
        delay = min(BACKFILL_RETRY_MAX_S, BACKFILL_RETRY_S * 2 ** min(n - 1, 16))
        self._backfill_after[sym] = self.clock.monotonic() + delay
        return delay

    async def backfill(self, symbols: list[str], now_ms: int, progress: Progress | None = None,
                       coverage: dict[str, tuple[int, int]] | None = None) -> dict[str, str]:
        """Fetch 24h of 5m OI history for symbols whose history is missing, stale or short (cold start,
        new listings). A failure (or no history at all) is retried after a per-symbol back-off that doubles.
        `coverage`: the store's history_coverage(), when the caller has read it already."""
        if coverage is None:
            coverage = await asyncio.to_thread(self.store.history_coverage)
        hours = self.cfg.history.backfill_hours
        need = [s for s in symbols if self._backfill_due(s, coverage, now_ms)]
        if not need:
            return {}
        errors: dict[str, str] = {}
        stopped: list[CycleStopped] = []
        done = 0
        sem = asyncio.Semaphore(min(self.cfg.exchange.max_concurrency, 10))

        async def one(sym: str) -> None:
            nonlocal done
            async with sem:
                if stopped:
                    return
                try:
                    rows = await self._history_pages(sym, hours * 12 + 1)
                    pts, bad = [], 0
                    for r in rows:
                        try:
                            pts.append(_hist_point(sym, r))
                        except (ValueError, KeyError, TypeError):
                            bad += 1                      # one bad row is a gap, not a lost symbol
                    if bad:
                        log.warning("openInterestHist (%s): %d row(s) with bad values skipped", sym, bad)
                    await asyncio.to_thread(self.store.add_oi_points, pts)
                    if pts:
                        self._backfilled.add(sym)
                        self._backfill_failures.pop(sym, None)
                        self._backfill_after.pop(sym, None)
                    else:
                        delay = self._backfill_failed(sym)
                        log.info("backfill: no history yet for %s; next try in %.0fs", sym, delay)
                except CycleStopped as e:
                    stopped.append(e)
                    return
                except BinanceError as e:
                    errors[sym] = str(e)
                except (ValueError, KeyError, TypeError) as e:
                    errors[sym] = f"openInterestHist ({sym}): malformed reply: {e}"
            done += 1
            if progress:
                progress(done, len(need))

        log.info("backfilling %d symbols with %dh of open-interest history", len(need), hours)
        await asyncio.gather(*(one(s) for s in need))
        if stopped:
            raise stopped[0]
        for s, e in errors.items():
            delay = self._backfill_failed(s)
            log.warning("backfill failed for %s (%d in a row, next try in %.0fs): %s",
                        s, self._backfill_failures[s], delay, e)
        return errors

    async def _history_pages(self, sym: str, points: int) -> list[dict]:
        """`points` 5m rows, newest last: one request up to 500 rows (41.6h), earlier pages by endTime."""
        rows: list[dict] = []
        end = None
        while len(rows) < points:
            limit = min(500, points - len(rows))
            page = await self.client.open_interest_hist(sym, "5m", limit=limit, end_time=end)
            if not isinstance(page, list):
                raise ValueError(f"expected a list, got {type(page).__name__}")
            rows = page + rows
            if len(page) < limit:
                break                    # no older history (a recent listing, or the 30-day limit)
            end = int(page[0]["timestamp"]) - 1
        return rows

    def _build_inputs(self, symbols, premium, tickers, oi_now, ts, failed
                      ) -> tuple[list[ScoreInputs], dict[str, MarketReceipt]]:
        tol = self.cfg.history.tolerance_minutes
        windows: dict[str, dict[str, list[OIPoint]]] = {}
        for name, h in HORIZONS_H.items():
            t_ms = tol.get(name, 60) * 60_000
            target = ts - h * HOUR_MS
            by_sym: dict[str, list[OIPoint]] = {}
            for p in self.store.oi_points_between(int(target - t_ms), int(target + t_ms)):
                by_sym.setdefault(p.symbol, []).append(p)
            windows[name] = by_sym
        inputs, raw = [], {}
        for s in symbols:
            if s not in oi_now or s in failed:
                continue                                  # reason already in `failed`
            if s not in premium:
                failed[s] = "no premiumIndex entry (mark/index/funding) for this symbol"
                continue
            try:
                inp, receipt = self._inputs_for(s, premium[s], tickers[s], oi_now[s], ts, windows, tol)
            except ValueError as e:
                failed[s] = f"bad market data: {e}"
                continue
            inputs.append(inp)
            raw[s] = receipt
        return inputs, raw

    def _inputs_for(self, s, prem, tick, oi_now, ts, windows, tol) -> tuple[ScoreInputs, MarketReceipt]:
        mark, index = _value(prem, "markPrice", "price"), _value(prem, "indexPrice", "price")
        funding = _value(prem, "lastFundingRate", "funding")
        if s in self._bad_intervals:
            raise ValueError(self._bad_intervals[s])
        oi, oi_ts = oi_now
        past = {name: nearest(windows[name].get(s, []), ts - h * HOUR_MS, tol.get(name, 60) * 60_000)
                for name, h in HORIZONS_H.items()}
        pct24 = _value(tick, "priceChangePercent", "pct")
        p1h = past["1h"].price if past["1h"] else None
        inp = ScoreInputs(
            symbol=s, funding_rate=funding, funding_interval_hours=self._intervals.get(s, 8.0),
            oi_change_1h=change(oi, past["1h"] and past["1h"].oi),
            oi_change_4h=change(oi, past["4h"] and past["4h"].oi),
            oi_change_24h=change(oi, past["24h"] and past["24h"].oi),
            basis=(mark - index) / index if index else None,
            price_change_1h=change(mark, p1h),
            price_change_24h=pct24 / 100,
        )
        _check_finite(inp)
        receipt = MarketReceipt(
            time=ts, mark_price=mark, index_price=index, funding_rate=funding,
            funding_interval_hours=inp.funding_interval_hours,
            funding_interval_source="fundingInfo" if s in self._intervals else "default 8h (not in fundingInfo)",
            price_change_24h_pct=pct24, last_price=tick.get("lastPrice"),
            oi={"now": [oi_ts, oi], **{name: ([p.ts, p.oi] if p else None) for name, p in past.items()}},
            price_1h_ago=[past["1h"].ts, p1h] if past["1h"] else None,
        )
        return inp, receipt


def _by_symbol(payload, what: str) -> dict[str, dict]:
    if not isinstance(payload, list):
        raise BinanceError(f"{what}: malformed reply (expected a list of symbols, got {type(payload).__name__})",
                           path=what)
    return {e["symbol"]: e for e in payload if isinstance(e, dict) and "symbol" in e}


def _hist_point(sym: str, row: dict) -> OIPoint:
    oi = _value(row, "sumOpenInterest", "amount")
    value = _value(row, "sumOpenInterestValue", "amount")
    price = value / oi if oi else None
    return OIPoint(sym, _time(row, "timestamp"), oi, price if price and math.isfinite(price) else None)
