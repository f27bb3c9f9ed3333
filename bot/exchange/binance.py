"""Binance USDⓈ-M futures public REST client (httpx, no API key).

Rate limits are respected, not hoped for:
- request weight goes through a token bucket (aiolimiter) sized below the 2400/min limit, and the
  `X-MBX-USED-WEIGHT-1M` header (which counts every client on our IP) pauses us near the limit;
- /futures/data/* has its own 1000 requests / 5 min budget;
- 429/418 pause *all* requests for Retry-After (or a backoff when absent), then retry;
- 5xx, timeouts and malformed JSON are retried with jittered exponential backoff (tenacity);
- Binance error bodies ({"code","msg"}) surface in the exception message.
Pauses and back-off waits read and sleep on an injected `Clock` (the real one by default), so tests
move time forward instead of waiting.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..clock import SYSTEM_CLOCK, Clock
from ..config import ExchangeConfig

log = logging.getLogger(__name__)

WEIGHT_HEADER = "x-mbx-used-weight-1m"


class BinanceError(Exception):
    """A request that failed for good. `retryable` errors were retried first."""

    def __init__(self, message: str, *, path: str = "", status: int | None = None,
                 code: int | None = None, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.path, self.status, self.code = path, status, code
        self.retryable, self.retry_after = retryable, retry_after


@dataclass
class RequestStats:
    requests: int = 0
    weight: int = 0                      # weight we spent (from the documented table)
    max_used_weight_1m: int = 0          # highest X-MBX-USED-WEIGHT-1M seen
    retries: int = 0
    by_path: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.requests = self.weight = self.max_used_weight_1m = self.retries = 0
        self.by_path.clear()


def _describe(resp: httpx.Response) -> tuple[str, int | None]:
    """Binance error bodies are {"code": int, "msg": str}; anything else is summarised."""
    try:
        body = resp.json()
        if isinstance(body, dict) and "msg" in body:
            return f"Binance error {body.get('code')}: {body['msg']}", body.get("code")
    except ValueError:
        pass
    text = resp.text.strip().replace("\n", " ")[:120]
    return f"HTTP {resp.status_code}" + (f": {text}" if text else ""), None


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class BinanceClient:
    def __init__(self, cfg: ExchangeConfig, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None):
        self.cfg = cfg
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.base_url = (base_url or cfg.base_url).rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=cfg.timeout_s, transport=transport,
            headers={"User-Agent": "derivatives-pressure-bot/0.1"},
            limits=httpx.Limits(max_connections=cfg.max_concurrency + 4),
        )
        budget = cfg.weight_limit * cfg.weight_headroom
        self._weight_bucket = AsyncLimiter(budget, 60)
        self._data_bucket = AsyncLimiter(cfg.data_limit_per_5m * cfg.weight_headroom, 300)
        self._paused_until = 0.0        # clock.monotonic() before which no request is sent (429/418)
        self.stats = RequestStats()

    @property
    def paused_for(self) -> float:
        """Seconds left of a rate-limit pause (0 when requests may go out)."""
        return max(0.0, self._paused_until - self.clock.monotonic())

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

    # ---- transport -------------------------------------------------------------------------
    async def get(self, path: str, params: dict | None = None, *, weight: int = 1) -> Any:
        """GET with rate limiting and retries; raises BinanceError with a specific message."""
        retrying = AsyncRetrying(
            sleep=self.clock.sleep,
            stop=stop_after_attempt(self.cfg.max_retries + 1),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception(lambda e: isinstance(e, BinanceError) and e.retryable),
            reraise=True,
            before_sleep=self._before_retry,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_once(path, params, weight)

    def _before_retry(self, state) -> None:
        self.stats.retries += 1
        err = state.outcome.exception()
        log.warning("binance retry %d for %s: %s", state.attempt_number, err.path, err)

    async def _get_once(self, path: str, params: dict | None, weight: int) -> Any:
        await self._respect_limits(path, weight)
        self.stats.requests += 1
        self.stats.weight += weight
        self.stats.by_path[path] += 1
        try:
            resp = await self._http.get(path, params=params)
        except httpx.TimeoutException as e:
            raise BinanceError(f"{path}: timed out after {self.cfg.timeout_s:g}s", path=path, retryable=True) from e
        except httpx.TransportError as e:
            raise BinanceError(f"{path}: network error: {e!r}", path=path, retryable=True) from e
        self._note_used_weight(resp)
        if resp.status_code in (429, 418):
            self._pause(resp)
            msg, code = _describe(resp)
            raise BinanceError(f"{path}: rate limited (HTTP {resp.status_code}) — {msg}", path=path,
                               status=resp.status_code, code=code, retryable=True, retry_after=_retry_after(resp))
        if resp.status_code >= 500 or resp.status_code == 408:
            msg, code = _describe(resp)
            raise BinanceError(f"{path}: server error — {msg}", path=path, status=resp.status_code,
                               code=code, retryable=True)
        if resp.status_code >= 400:
            msg, code = _describe(resp)
            where = f" ({params.get('symbol')})" if params and params.get("symbol") else ""
            raise BinanceError(f"{path}{where}: {msg}", path=path, status=resp.status_code, code=code)
        try:
            return json.loads(resp.content)
        except ValueError as e:
            raise BinanceError(f"{path}: malformed JSON reply ({len(resp.content)} bytes): {e}",
                               path=path, status=resp.status_code, retryable=True) from e

    async def _respect_limits(self, path: str, weight: int) -> None:
        wait = self._paused_until - self.clock.monotonic()
        if wait > 0:
            await self.clock.sleep(wait)
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
            self._paused_until = max(self._paused_until, self.clock.monotonic() + until_next_minute)
            log.warning("binance used weight %d/%d: pausing %.0fs", used, self.cfg.weight_limit, until_next_minute)

    def _pause(self, resp: httpx.Response) -> None:
        seconds = _retry_after(resp)
        if seconds is None:
            seconds = 2.0 if resp.status_code == 429 else 60.0
        self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)
        log.warning("binance HTTP %d: pausing all requests for %.1fs", resp.status_code, seconds)
