"""Binance USDⓈ-M futures public REST client (httpx, no API key).

One `httpx.AsyncClient` serves every request; its `transport=` seam is the one place the wire is chosen (tests
pass an `httpx.MockTransport`). By default that transport is httpx-aiohttp's `AiohttpTransport` (one aiohttp
keep-alive pool, made on first use inside the running loop), not httpcore's: httpcore's pool rescans every
connection (and asks each idle socket whether it is readable) on every request, which cost ~1 ms of CPU a
request more (bench/freshness.py measures both side by side); at one-minute cycles over 600 symbols that CPU,
not the network, bounded the cycle.

The client cannot hammer: every request it makes shares one back-off state.
- request weight goes through a token bucket (aiolimiter) sized below the 2400/min limit, and the
  `X-MBX-USED-WEIGHT-1M` header (which counts every client on our IP) pauses us near the limit;
- /futures/data/* has its own 1000 requests / 5 min budget;
- 429: every request waits `Retry-After` — whole seconds, digits only (anything else reads as 2 s), capped
  at `exchange.max_retry_after_s`;
- 418 (IP ban): no request at all until the ban's end (the body's "banned until <ms>", else Retry-After,
  else 2 minutes, Binance's shortest ban; at most 3 days, its longest);
- 5xx, 403, timeouts, network errors and malformed JSON: a shared back-off that doubles with each such failure
  in a row (jittered, capped at a minute), reset by any answer;
- a request is retried up to `max_retries` times, but `stop_after_refusals` 429/418 replies in a row, or failures
  of that many *different* requests in a row (one symbol failing is its own problem, many are the exchange's),
  or more failures in a row than one request's retries make, stop the cycle: `CycleStopped` is raised for
  that request and for every later one until `begin_cycle`, so a refusing exchange costs a cycle a handful
  of requests, never one per symbol;
- `begin_cycle(budget_s)`: a pause that would end after the cycle's budget stops the cycle (with that reason)
  instead of sleeping;
- time limits are per request: connect plus the whole body within `timeout_s` (a trickling body is cut off);
- Binance error bodies ({"code","msg"}) surface in the exception message.
Pauses and back-off waits read and sleep on an injected `Clock` (the real one by default), so tests
move time forward instead of waiting.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport

from ..clock import SYSTEM_CLOCK, Clock
from ..config import ExchangeConfig

log = logging.getLogger(__name__)

WEIGHT_HEADER = "x-mbx-used-weight-1m"
RETRY_AFTER_DEFAULT_S = 2.0     # a 429 without a usable Retry-After
BAN_DEFAULT_S = 120.0           # a 418 that does not say how long (Binance bans start at 2 minutes)
BAN_MAX_S = 3 * 86_400.0        # ... and end at 3 days at most
BACKOFF_BASE_S = 0.5            # 5xx/timeouts in a row: 0.5, 1, 2, 4 ... s (jittered), shared by every request
BACKOFF_MAX_S = 60.0
_WHOLE_SECONDS = re.compile(r"[0-9]{1,12}")
_BANNED_UNTIL = re.compile(r"banned until ([0-9]{10,16})")


class BinanceError(Exception):
    """A request that failed for good. `retryable` errors were retried first."""

    def __init__(self, message: str, *, path: str = "", status: int | None = None,
                 code: int | None = None, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.path, self.status, self.code = path, status, code
        self.retryable, self.retry_after = retryable, retry_after


class CycleStopped(BinanceError):
    """The exchange refuses us, or asks for a pause longer than the cycle has left: the cycle ends here
    and no further request goes out in it. `retry_in`: seconds until the client sends again (0: next cycle)."""

    def __init__(self, message: str, *, retry_in: float = 0.0):
        super().__init__(message)
        self.retry_in = retry_in


@dataclass
class RequestStats:
    requests: int = 0
    weight: int = 0                      # weight we spent (from the documented table)
    max_used_weight_1m: int = 0          # highest X-MBX-USED-WEIGHT-1M seen
    retries: int = 0
    by_path: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)   # "HTTP 429", "HTTP 503", "timeout" ... -> count

    def reset(self) -> None:
        self.requests = self.weight = self.max_used_weight_1m = self.retries = 0
        self.by_path.clear()
        self.refusals.clear()


def _describe(resp: httpx.Response) -> tuple[str, int | None]:
    """Binance error bodies are {"code": int, "msg": str}; anything else is summarised."""
    try:
        body = resp.json()
        if isinstance(body, dict) and "msg" in body:
            return f"Binance error {body.get('code')}: {body['msg']}", body.get("code")
    except (ValueError, RecursionError):
        pass
    text = resp.text.strip().replace("\n", " ")[:120]
    return f"HTTP {resp.status_code}" + (f": {text}" if text else ""), None


def kline_weight(limit: int) -> int:
    """Request weight of /fapi/v1/klines: it grows with the limit (exchange-apis: B-KL)."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """`Retry-After` as whole seconds — digits only: "inf", "1e9", "-1", "2.5" or an HTTP date read as
    absent (None) — and never more than `cap`."""
    if value is None or not _WHOLE_SECONDS.fullmatch(value.strip()):
        return None
    return min(float(value.strip()), cap)


def _retry_after(resp: httpx.Response) -> float | None:
    return parse_retry_after(resp.headers.get("retry-after"), math.inf)


class BinanceClient:
    def __init__(self, cfg: ExchangeConfig, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None):
        self.cfg = cfg
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.base_url = (base_url or cfg.base_url).rstrip("/")
        limits = httpx.Limits(max_connections=cfg.max_concurrency + 4,
                              max_keepalive_connections=cfg.max_concurrency + 4)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=cfg.timeout_s, limits=limits,
            transport=transport or AiohttpTransport(limits=limits),
            headers={"User-Agent": "derivatives-pressure-bot/0.1"},
        )
        budget = cfg.weight_limit * cfg.weight_headroom
        self._weight_bucket = AsyncLimiter(budget, 60)
        self._data_bucket = AsyncLimiter(cfg.data_limit_per_5m * cfg.weight_headroom, 300)
        # the one back-off state every request shares
        self._paused_until = 0.0        # clock.monotonic() before which no request is sent
        self._pause_reason = ""
        self._failures_in_row = 0       # 5xx/timeouts/network/malformed since the last answer: the back-off grows
        self._refused_in_row = 0        # 429/418 since the last answer
        self._failing: set[str] = set()  # different requests failing since the last answer
        self._stopped: str | None = None  # why this cycle stopped (no request goes out until begin_cycle)
        self._deadline: float | None = None   # clock.monotonic() by which this cycle must be done
        self.stats = RequestStats()

    @property
    def paused_for(self) -> float:
        """Seconds left of a shared pause (0 when requests may go out)."""
        return max(0.0, self._paused_until - self.clock.monotonic())

    @property
    def stopped(self) -> str | None:
        """Why the current cycle was stopped (None: it wasn't)."""
        return self._stopped

    def begin_cycle(self, budget_s: float | None = None) -> None:
        """A new cycle: fresh statistics, the stop lifted, and a time budget — a pause that would end after
        it stops the cycle instead. The pause itself and the growing 5xx back-off carry over: a ban
        outlives cycles."""
        self.stats.reset()
        self._stopped = None
        self._refused_in_row = 0
        self._failing.clear()
        self._deadline = None if budget_s is None else self.clock.monotonic() + budget_s

    async def __aenter__(self) -> "BinanceClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- endpoints -------------------------------------------------------------------------
    async def exchange_info(self) -> dict:
        return await self.get("/fapi/v1/exchangeInfo", weight=1)

    async def premium_index(self) -> list[dict]:
        return await self.get("/fapi/v1/premiumIndex", weight=10)

    async def ticker_24hr(self) -> list[dict]:
        return await self.get("/fapi/v1/ticker/24hr", weight=40)

    async def open_interest(self, symbol: str) -> dict:
        return await self.get("/fapi/v1/openInterest", {"symbol": symbol}, weight=1)

    async def funding_info(self) -> list[dict]:
        return await self.get("/fapi/v1/fundingInfo", weight=0)

    async def open_interest_hist(self, symbol: str, period: str = "5m", limit: int = 289,
                                 start_time: int | None = None, end_time: int | None = None) -> list[dict]:
        params: dict[str, Any] = {"symbol": symbol, "period": period, "limit": limit}
        if start_time is not None:
            params["startTime"] = start_time
        if end_time is not None:
            params["endTime"] = end_time
        return await self.get("/futures/data/openInterestHist", params, weight=0)

    async def klines(self, symbol: str, interval: str = "1h", limit: int = 500,
                     start_time: int | None = None, end_time: int | None = None) -> list[list]:
        """Candles, ascending: [openTime, open, high, low, close, volume, closeTime, quoteVolume,
        trades, takerBuyBase, takerBuyQuote, ignore]; the last one may still be open."""
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_time is not None:
            params["startTime"] = start_time
        if end_time is not None:
            params["endTime"] = end_time
        return await self.get("/fapi/v1/klines", params, weight=kline_weight(limit))

    # ---- transport -------------------------------------------------------------------------
    async def get(self, path: str, params: dict | None = None, *, weight: int = 1) -> Any:
        """GET with rate limiting and retries; raises BinanceError with a specific message, CycleStopped
        once the exchange has refused enough (or asked for a longer pause than the cycle has left).
        Retries wait on the shared pause their failure set, nothing of their own."""
        key = path + ("?" + urlencode(sorted(params.items())) if params else "")
        attempt = 0
        while True:
            try:
                return await self._get_once(path, params, weight, key)
            except CycleStopped:
                raise
            except BinanceError as e:
                if not e.retryable or attempt >= self.cfg.max_retries:
                    raise
                attempt += 1
                self.stats.retries += 1
                log.warning("binance retry %d for %s: %s", attempt, e.path, e)

    async def _get_once(self, path: str, params: dict | None, weight: int, key: str) -> Any:
        await self._respect_limits(path, weight)
        self.stats.requests += 1
        self.stats.weight += weight
        self.stats.by_path[path] += 1
        try:
            async with asyncio.timeout(self.cfg.timeout_s):     # connect + the whole body, not per read
                resp = await self._http.get(path, params=params)
        except (TimeoutError, httpx.TransportError, aiohttp.ClientError) as e:   # aiohttp's: those left unmapped
            wrapped = e.__cause__ if isinstance(e.__cause__, aiohttp.ClientError) else e
            if isinstance(wrapped, TimeoutError) or (wrapped is e and isinstance(e, httpx.TimeoutException)):
                raise self._failed(key, "timeout", BinanceError(
                    f"{path}: timed out after {self.cfg.timeout_s:g}s", path=path, retryable=True)) from e
            # httpx-aiohttp 0.2 maps every aiohttp connection error (a refused connect too) to httpx.ConnectTimeout:
            # what it wraps says whether it was one
            raise self._failed(key, "network error", BinanceError(
                f"{path}: network error: {type(wrapped).__name__}: {str(wrapped) or '(no detail)'}", path=path,
                retryable=True)) from e
        self._note_used_weight(resp)
        status = resp.status_code
        if status in (429, 418):
            msg, code = _describe(resp)
            seconds = self._pause(resp, msg)
            raise self._refused(f"HTTP {status}", BinanceError(
                f"{path}: rate limited (HTTP {status}) — {msg}", path=path, status=status, code=code,
                retryable=True, retry_after=seconds))
        if status >= 500 or status in (403, 408):
            msg, code = _describe(resp)
            what = "refused (HTTP 403, a WAF limit)" if status == 403 else "server error"
            raise self._failed(key, f"HTTP {status}", BinanceError(
                f"{path}: {what} — {msg}", path=path, status=status, code=code, retryable=status != 403))
        if status >= 400:
            self._answered()                 # a clear "no" about this request: the exchange itself is fine
            msg, code = _describe(resp)
            where = f" ({params.get('symbol')})" if params and params.get("symbol") else ""
            raise BinanceError(f"{path}{where}: {msg}", path=path, status=status, code=code)
        try:
            body = json.loads(resp.content)
        except (ValueError, RecursionError) as e:
            raise self._failed(key, "malformed reply", BinanceError(
                f"{path}: malformed JSON reply ({len(resp.content)} bytes): {str(e)[:100]}",
                path=path, status=status, retryable=True)) from None
        self._answered()
        return body

    # ---- the shared back-off -----------------------------------------------------------------
    def _answered(self) -> None:
        self._failures_in_row = self._refused_in_row = 0
        self._failing.clear()

    def _failed(self, key: str, label: str, err: BinanceError) -> BinanceError:
        """A 5xx/403/timeout/network/malformed failure: everyone backs off (longer each time in a row);
        failures of `stop_after_refusals` different requests in a row stop the cycle, and so do more failures
        in a row than one request's retries can make (the count carries over cycles: while the exchange is
        down, the next cycle stops at its first failure)."""
        self.stats.refusals[label] += 1
        self._failures_in_row += 1
        self._failing.add(key)
        backoff = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(self._failures_in_row - 1, 16))
        self._extend_pause(backoff * random.uniform(0.5, 1.0), f"backing off after {label}")
        k = self.cfg.stop_after_refusals
        if len(self._failing) >= k or self._failures_in_row >= k + self.cfg.max_retries:
            return self._stop(err)          # many requests failing, or more failures in a row than one request makes
        return err

    def _refused(self, label: str, err: BinanceError) -> BinanceError:
        """A 429/418: the pause is already set; `stop_after_refusals` of them in a row stop the cycle."""
        self.stats.refusals[label] += 1
        self._refused_in_row += 1
        if self._refused_in_row >= self.cfg.stop_after_refusals:
            return self._stop(err)
        return err

    def _stop(self, err: BinanceError | None, why: str | None = None) -> CycleStopped:
        if self._stopped is None:
            labels = self.stats.refusals
            counts = ", ".join(f"{k} ×{n}" for k, n in labels.most_common())
            what = ("exchange refusing requests" if labels.keys() & {"HTTP 429", "HTTP 418"} else
                    "exchange unreachable" if labels.keys() <= {"network error"} else "exchange failing requests")
            head = why or f"{what}: {counts}"
            self._stopped = (f"{head}, cycle stopped after {self.stats.requests} request"
                             f"{'' if self.stats.requests == 1 else 's'}, next try {self._next_try()}"
                             + (f" (last: {_short(str(err))})" if err is not None else ""))
        return CycleStopped(self._stopped, retry_in=self.paused_for)

    def _next_try(self) -> str:
        left = self.paused_for
        return f"in {math.ceil(left)}s" if left >= 0.5 else "with the next cycle"

    def _extend_pause(self, seconds: float, reason: str) -> None:
        until = self.clock.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until, self._pause_reason = until, reason

    async def _respect_limits(self, path: str, weight: int) -> None:
        while True:
            if self._stopped is not None:
                raise CycleStopped(self._stopped, retry_in=self.paused_for)
            now = self.clock.monotonic()
            wait = self._paused_until - now
            if wait <= 0:
                break
            if self._deadline is not None and self._paused_until > self._deadline:
                left = max(0.0, self._deadline - now)
                raise self._stop(None, f"exchange asked us to wait {math.ceil(wait)}s ({self._pause_reason}), "
                                       f"longer than the {left:.0f}s left of this cycle's budget")
            await self.clock.sleep(wait)       # then look again: another request may have paused us further
        if path.startswith("/futures/data/"):
            await self._data_bucket.acquire()
        if weight:
            await self._weight_bucket.acquire(weight)

    def _note_used_weight(self, resp: httpx.Response) -> None:
        try:
            used = int(resp.headers[WEIGHT_HEADER])
        except (KeyError, ValueError):
            return
        self.stats.max_used_weight_1m = max(self.stats.max_used_weight_1m, used)
        if used >= self.cfg.weight_limit * self.cfg.weight_headroom:
            # Other clients on this IP count too: hold off until the minute window rolls over.
            until_next_minute = 60 - (self.clock.time() % 60) + 0.5
            self._extend_pause(until_next_minute, f"used weight {used}/{self.cfg.weight_limit}")
            log.warning("binance used weight %d/%d: pausing %.0fs", used, self.cfg.weight_limit, until_next_minute)

    def _pause(self, resp: httpx.Response, msg: str) -> float:
        """429: everyone waits Retry-After (strict, capped); 418: no request until the ban's end."""
        seconds = parse_retry_after(resp.headers.get("retry-after"), self.cfg.max_retry_after_s)
        if resp.status_code == 418:
            ban_left = None
            m = _BANNED_UNTIL.search(msg)
            if m:
                left = int(m.group(1)) / 1000 - self.clock.time()
                ban_left = min(left, BAN_MAX_S) if left > 0 else None
            known = [s for s in (seconds, ban_left) if s is not None]
            seconds = max(known) if known else BAN_DEFAULT_S
            reason = "IP banned (HTTP 418)"
        else:
            seconds = RETRY_AFTER_DEFAULT_S if seconds is None else seconds
            reason = "rate limited (HTTP 429)"
        self._extend_pause(seconds, reason)
        log.warning("binance HTTP %d: pausing all requests for %.1fs", resp.status_code, seconds)
        return seconds
