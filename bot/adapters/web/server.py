"""The reference page and its JSON API, served by the bot itself (aiohttp.web + Jinja2, read-only).

An adapter like the chat ones: it translates HTTP to the same `bot.queries.Queries` port the commands use
(the market `Snapshot` in memory; the few stored reads awaited off the loop), and `bot.app` registers it
(it has no chat channel and no recipient of its own). Everything it answers comes from the last published
cycle: the rendered `/` is cached per (cycle ts, filter), the JSON per cycle ts, with ETags keyed on the
cycle, so polling costs a 304. Safe by default: GET/HEAD only, Jinja2 autoescape, no internals in any error
(a middleware turns every exception into `{"error": ...}`), and a request budget per client address.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Awaitable, Callable, Protocol

import jinja2
from aiohttp import web

from ...commands import METHODOLOGY
from ...config import ScoreConfig
from ...queries import Queries, Snapshot
from ...report import pct, utc
from ...score import api_item
from ...symbols import clean, normalize, suggest
from . import views

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
REVALIDATE = "no-cache"            # cache it, but ask every time: the ETag makes the answer a 304 until the next cycle
STATIC_FILES = {"style.css": "text/css", "page.js": "text/javascript", "favicon.svg": "image/svg+xml"}
CACHE_ENTRIES = 512                 # rendered pages / JSON bodies kept (per cycle: a new cycle clears them)
CHART_ENTRIES = 16
SIGNALS_SHOWN = 100
MAX_RECENT = 200


class WebQueries(Queries, Protocol):
    """The port, plus the one read the public pages need beyond the chat commands' (`bot.app.BotQueries`)."""

    async def public_signals(self, limit: int = 50, symbol: str | None = None,
                             since_ms: int | None = None) -> list[dict]: ...

    async def performance(self, symbol: str | None, days: int) -> dict: ...


class Problem(Exception):
    """A request the server answers with an error status and a plain message (never a traceback)."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class Budget:
    """A token bucket per client address: `rate` requests a second, bursts up to `burst`. `take` returns 0
    (go ahead) or the seconds until the next token. Buckets of idle clients are dropped to bound memory."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        self.rate, self.burst, self.clock, self.max_clients = rate, burst, clock, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if key not in self._buckets and len(self._buckets) >= self.max_clients:
            self._prune(now)
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate          # a bucket idle this long is full again: forgetting it changes nothing
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
        while len(self._buckets) >= self.max_clients:     # still too many busy clients: the oldest go
            self._buckets.pop(next(iter(self._buckets)))


@dataclass(frozen=True)
class Cached:
    """A rendered answer: body, its gzip, and its ETag (the gzip variant's tag ends in -gz)."""
    etag: str
    body: bytes
    content_type: str
    gz: bytes | None = None

    @property
    def etag_gz(self) -> str:
        return self.etag[:-1] + '-gz"'


def _json_bytes(payload: Any) -> bytes:
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:          # a non-finite float somewhere: null it rather than answer invalid JSON
        text = json.dumps(_finite(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _tags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}


class WebServer:
    """The HTTP server in the bot's process. `start`/`stop` bind and release `host:port` (port 0: a free one;
    `url` says which); `app` is the aiohttp application (tests and the bench serve it themselves)."""

    def __init__(self, queries: WebQueries, score_cfg: ScoreConfig, interval_s: float, host: str = "127.0.0.1",
                 port: int = 0, *, rate: float = 10.0, burst: int = 60,
                 announce: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.queries, self.score_cfg, self.interval_s = queries, score_cfg, interval_s
        self.host, self.port, self.announce = host, port, announce
        self.clock, self.wall = clock, wall
        self.budget = Budget(rate, burst, clock)
        self.url: str | None = None
        self._boot = secrets.token_hex(3)      # a restart never answers 304 to the previous process's pages
        self._seen_ts: int | None = None
        self._seen_at: float | None = None
        self._observed = False
        self._cache: dict[tuple, Cached] = {}
        self._charts: dict[tuple, Cached] = {}
        self._pending: dict[tuple, asyncio.Future] = {}
        self._chart_gate: asyncio.Semaphore | None = None
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task | None = None
        self._static = self._load_static()
        self._static_v = {name: c.etag.strip('"')[:8] for name, c in self._static.items()}
        self._jinja = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=True,
                                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._jinja.filters["pctf"] = pct
        self.app = self._build_app()

    # ------------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Listen (a port already taken is logged, and the bot runs on without its page)."""
        self._observe()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            log.error("web: cannot listen on %s:%s (%s); running without the web page", self.host, self.port,
                      e.strerror or e)
            await runner.cleanup()
            return
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        self._watch = asyncio.get_running_loop().create_task(self._watch_snapshot())
        log.info("web: serving %s", self.url)
        if self.announce is not None:
            self.announce(self.url)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # The chat-adapter protocol's delivery side: the web has no channel and no recipient of its own.
    def senders(self) -> dict:
        return {}

    def recipients(self) -> list:
        return []

    def disable_route(self, channel: str, address: str, error: str) -> None:
        pass

    # ------------------------------------------------------------------------------------------ the snapshot
    async def _watch_snapshot(self) -> None:
        """Note when each cycle is published (the health check's age), whether or not anyone asks."""
        while True:
            self._observe()
            await asyncio.sleep(1.0)

    def _observe(self) -> Snapshot:
        """The current snapshot; a new cycle's is timed (monotonic) and drops the previous cycle's renders."""
        snap = self.queries.snapshot()
        if snap.ts != self._seen_ts or not self._observed:
            if snap.ts is None:
                self._seen_at = None
            elif not self._observed:     # published before we started (a restart): age by the exchange's time
                self._seen_at = self.clock() - max(0.0, self.wall() - snap.ts / 1000)
            else:
                self._seen_at = self.clock()
            self._seen_ts, self._observed = snap.ts, True
            self._cache.clear()
        return snap

    def age_s(self) -> float | None:
        return None if self._seen_at is None else max(0.0, self.clock() - self._seen_at)

    # ------------------------------------------------------------------------------------------ plumbing
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard, self._budget], client_max_size=4096)
        r = app.router
        for path, handler in (
                ("/", self.page_index), ("/symbol", self.page_search), ("/symbol/{symbol}", self.page_symbol),
                ("/symbol/{symbol}/chart.png", self.chart), ("/signals", self.page_signals),
                ("/performance", self.page_performance), ("/verify", self.page_verify),
                ("/liqmap/{coin}", self.page_liqmap), ("/methodology", self.page_methodology),
                ("/api/public/pressure", self.api_pressure),
                ("/api/public/pressure/{symbol}", self.api_pressure_symbol),
                ("/api/public/recent", self.api_recent), ("/api/public/symbols/{symbol}", self.api_symbol),
                ("/healthz", self.healthz), ("/static/{name}", self.static), ("/favicon.ico", self.favicon)):
            r.add_get(path, handler)          # GET and HEAD only: nothing here changes anything
        app.on_response_prepare.append(self._headers)
        return app

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h["Server"] = "pressure-bot"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["X-Frame-Options"] = "DENY"
        h["Content-Security-Policy"] = CSP

    @staticmethod
    def _api(request: web.Request) -> bool:
        return request.path.startswith("/api/") or request.path == "/healthz"

    def _error(self, request: web.Request, status: int, message: str, extra: dict | None = None,
               headers: dict | None = None) -> web.Response:
        """JSON `{"error": ...}`; a browser asking for a page gets the same message as a page."""
        extra = extra or {}
        headers = dict(headers or {}, **{"Cache-Control": "no-store"})
        if not self._api(request) and "text/html" in request.headers.get("Accept", ""):
            html = self._render("error.html", title=f"{status}", status=status, message=message,
                                suggestion=extra.get("suggestion"), etag="", live=False)
            return web.Response(status=status, body=html.encode(), content_type="text/html", charset="utf-8",
                                headers=headers)
        return web.Response(status=status, body=_json_bytes({"error": message, **extra}),
                            content_type="application/json", headers=headers)

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Every failure becomes a plain answer with the right status; internals go to the log only."""
        try:
            return await handler(request)
        except Problem as p:
            return self._error(request, p.status, p.message, p.extra)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            message = {404: "not found", 405: "method not allowed: this server is read-only (GET, HEAD)",
                       413: "request too large"}.get(e.status, e.reason.lower())
            return self._error(request, e.status, message, headers=allow)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("web: %s %s failed", request.method, request.path)
            return self._error(request, 500, "internal error")

    @web.middleware
    async def _budget(self, request: web.Request, handler) -> web.StreamResponse:
        wait = self.budget.take(request.remote or "?")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return web.Response(status=429, body=_json_bytes({"error": "too many requests", "retryAfter": retry}),
                                content_type="application/json",
                                headers={"Retry-After": str(retry), "Cache-Control": "no-store"})
        return await handler(request)

    def _etag(self, ts: int | None, variant: str) -> str:
        return f'"{self._boot}-{ts}-{variant}"'

    async def _cached(self, store: dict, key: tuple, build: Callable[[], Awaitable[Cached]],
                      limit: int = CACHE_ENTRIES) -> Cached:
        """The cached answer for `key`, built once however many requests ask for it at the same time."""
        hit = store.get(key)
        if hit is not None:
            return hit
        fut = self._pending.get(key)
        if fut is None:
            fut = asyncio.ensure_future(build())
            self._pending[key] = fut

            def done(f: asyncio.Future) -> None:
                self._pending.pop(key, None)
                if not f.cancelled() and f.exception() is None:
                    while len(store) >= limit:
                        store.pop(next(iter(store)))
                    store[key] = f.result()
            fut.add_done_callback(done)
        return await asyncio.shield(fut)

    @staticmethod
    def _send(request: web.Request, c: Cached, cache_control: str = REVALIDATE) -> web.Response:
        gz = c.gz is not None and "gzip" in request.headers.get("Accept-Encoding", "")
        headers = {"ETag": c.etag_gz if gz else c.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
        if _tags(request.headers.get("If-None-Match")) & {c.etag, c.etag_gz, "*"}:
            return web.Response(status=304, headers=headers)
        if gz:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=c.gz if gz else c.body, headers=dict(headers, **{"Content-Type": c.content_type}))

    def _render(self, template: str, **context: Any) -> str:
        return self._jinja.get_template(template).render(static_v=self._static_v, poll_s=self._poll_s(), **context)

    def _poll_s(self) -> int:
        """How often an open page asks whether a new cycle is out: half an interval, 5 s to 60 s."""
        return int(min(60, max(5, self.interval_s / 2)))

    def _html(self, etag: str, template: str, **context: Any) -> Cached:
        body = self._render(template, etag=etag, **context).encode()
        return Cached(etag, body, "text/html; charset=utf-8", gzip.compress(body, 5))

    def _json(self, etag: str, payload: Any) -> Cached:
        body = _json_bytes(payload)
        return Cached(etag, body, "application/json; charset=utf-8",
                      gzip.compress(body, 5) if len(body) > 1024 else None)

    def _resolve(self, text: str, snap: Snapshot, scored: bool = True) -> str:
        """The symbol meant (case and spelling as users type it), or a 404 with a 'did you mean'."""
        known = snap.symbols()
        sym = normalize(text, known) if len(text) <= 40 else None
        if sym is None:
            hint = suggest(text, known) if known and len(text) <= 40 else None
            shown = clean(text)[:40]
            raise Problem(404, f"unknown symbol {shown}" + (f"; did you mean {hint}?" if hint else ""),
                          suggestion=hint)
        if scored and snap.result(sym) is None:
            raise Problem(404, f"no score for {sym} in the last cycle" if snap.ts else
                          "no cycle yet: the first one is on its way", suggestion=None)
        return sym

    def _page(self, template: str, title: str, **context: Any) -> Cached:
        return self._html(self._etag(self._seen_ts, template), template, title=title, live=False, **context)

    # ------------------------------------------------------------------------------------------ pages
    async def page_index(self, request: web.Request) -> web.Response:
        side = request.query.get("side", "all").lower()
        if side not in views.SIDES:
            raise Problem(400, "side must be long, short or all")
        snap = self._observe()

        async def build() -> Cached:
            etag = self._etag(snap.ts, f"index-{side}")
            return await asyncio.to_thread(
                self._html, etag, "index.html", title="Derivatives pressure", live=True, snap_ts=snap.ts,
                updated=utc(snap.ts), strip=views.strip(snap.results), side=side, sides=views.SIDE_TITLES,
                rows=views.table(snap.results, side), bands=views.bands(self.score_cfg),
                bias_min=self.score_cfg.bias_min_score)
        return self._send(request, await self._cached(self._cache, ("index", snap.ts, side), build))

    async def page_search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        if not q:
            raise Problem(400, "q: type a symbol, e.g. BTC")
        raise web.HTTPFound(f"/symbol/{self._resolve(q, self._observe())}")

    async def page_symbol(self, request: web.Request) -> web.Response:
        snap = self._observe()
        text = request.match_info["symbol"]
        sym = self._resolve(text, snap)
        if sym != text:
            raise web.HTTPFound(f"/symbol/{sym}")
        r = snap.result(sym)

        async def build() -> Cached:
            signals = [views.signal_row(s) for s in await self.queries.public_signals(20, symbol=sym)]
            item = api_item(r, self.score_cfg)
            rank = next(i for i, x in enumerate(snap.results, start=1) if x["symbol"] == sym)
            return await asyncio.to_thread(
                self._html, self._etag(snap.ts, f"symbol-{sym}"), "symbol.html", title=f"{sym} · pressure",
                live=True, r=r, item=item, rank=rank, n=len(snap.results), updated=utc(snap.ts),
                parts=views.contributions(r, self.score_cfg), signals=signals)
        return self._send(request, await self._cached(self._cache, ("symbol", snap.ts, sym), build))

    async def chart(self, request: web.Request) -> web.Response:
        snap = self._observe()
        sym = self._resolve(request.match_info["symbol"], snap)

        async def build() -> Cached:
            if self._chart_gate is None:
                self._chart_gate = asyncio.Semaphore(1)     # one matplotlib figure at a time
            async with self._chart_gate:
                png = await self.queries.chart(sym)        # rendered in a worker thread
            return Cached(self._etag(snap.ts, f"chart-{sym}"), png, "image/png")
        return self._send(request, await self._cached(self._charts, (snap.ts, sym), build, CHART_ENTRIES))

    async def page_signals(self, request: web.Request) -> web.Response:
        snap = self._observe()

        async def build() -> Cached:
            rows = [views.signal_row(s) for s in await self.queries.public_signals(SIGNALS_SHOWN)]
            return self._page("signals.html", "Recent signals", signals=rows, updated=utc(snap.ts))
        return self._send(request, await self._cached(self._cache, ("signals", snap.ts), build))

    async def _static_page(self, request: web.Request, template: str, title: str, variant: str = "",
                           **context: Any) -> web.Response:
        """A page that changes only with the cycle it names (or never): cached per (template, variant, cycle)."""
        self._observe()

        async def build() -> Cached:
            return self._page(template, title, **context)
        return self._send(request, await self._cached(self._cache, (template, variant, self._seen_ts), build))

    async def page_performance(self, request: web.Request) -> web.Response:
        window = request.query.get("window", "30")
        if window not in {str(w) for w in views.WINDOWS_DAYS}:
            raise Problem(400, "window must be 30, 90 or 180 (days)")
        snap = self._observe()

        async def build() -> Cached:
            rep = await self.queries.performance(None, int(window))
            return self._page("performance.html", "Performance", rep=rep, window=int(window),
                              windows=views.WINDOWS_DAYS, updated=utc(snap.ts))
        return self._send(request, await self._cached(self._cache, ("performance", snap.ts, window), build))

    async def page_verify(self, request: web.Request) -> web.Response:
        last = await self.queries.last_seal()
        return await self._static_page(request, "verify.html", "Verify", str(last["hash"] if last else None),
                                       public_key=self.queries.public_key,
                                       manifest=last["manifest"] if last else None,
                                       manifest_hash=last["hash"] if last else None,
                                       sealed_at=utc(last["manifest"]["cycle_ts"]) if last else None)

    async def page_liqmap(self, request: web.Request) -> web.Response:
        coin = request.match_info["coin"].lower()
        if coin not in ("btc", "eth"):
            raise Problem(404, "the liquidation map is planned for btc and eth first")
        return await self._static_page(request, "liqmap.html", f"LiqMap {coin.upper()}", coin, coin=coin)

    async def page_methodology(self, request: web.Request) -> web.Response:
        cfg = self.score_cfg
        terms = [{"label": label, "weight": cfg.contributions[name].weight,
                  "full_scale": pct(cfg.contributions[name].full_scale, 3).lstrip("+")}
                 for name, label, _, _ in views.CONTRIBUTION_ROWS]
        return await self._static_page(request, "methodology.html", "Methodology",
                                       lines=METHODOLOGY.splitlines()[1:], terms=terms, bands=views.bands(cfg),
                                       bias_min=cfg.bias_min_score)

    # ------------------------------------------------------------------------------------------ JSON API
    async def api_pressure(self, request: web.Request) -> web.Response:
        snap = self._observe()

        async def build() -> Cached:
            return await asyncio.to_thread(lambda: self._json(
                self._etag(snap.ts, "pressure"), views.pressure_payload(snap.ts, snap.results, self.score_cfg)))
        return self._send(request, await self._cached(self._cache, ("pressure", snap.ts), build))

    async def api_pressure_symbol(self, request: web.Request) -> web.Response:
        snap = self._observe()
        sym = self._resolve(request.match_info["symbol"], snap)
        rank = next(i for i, x in enumerate(snap.results, start=1) if x["symbol"] == sym)
        item = dict(api_item(snap.result(sym), self.score_cfg), rank=rank)
        return self._send(request, self._json(self._etag(snap.ts, f"pressure-{sym}"),
                                              {"generatedAt": views.iso(snap.ts), "item": item}))

    async def api_recent(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_RECENT:
            raise Problem(400, f"limit must be a whole number from 1 to {MAX_RECENT}")
        snap = self._observe()

        async def build() -> Cached:
            rows = [views.signal_row(s) for s in await self.queries.public_signals(limit)]
            return self._json(self._etag(snap.ts, f"recent-{limit}"),
                              {"generatedAt": views.iso(snap.ts), "count": len(rows), "items": rows,
                               "note": "fired signals; outcome: null while open, else its closing record (TP1/SL/"
                                       "TIMEOUT, follow and fade net bps after fees, slippage and funding)"})
        return self._send(request, await self._cached(self._cache, ("recent", snap.ts, limit), build))

    async def api_symbol(self, request: web.Request) -> web.Response:
        window = request.query.get("window", "30")
        if window not in {str(w) for w in views.WINDOWS_DAYS}:
            raise Problem(400, "window must be 30, 90 or 180 (days)")
        days = int(window)
        snap = self._observe()
        sym = self._resolve(request.match_info["symbol"], snap, scored=False)

        async def build() -> Cached:
            since = (snap.ts if snap.ts is not None else int(self.wall() * 1000)) - days * views.DAY_MS
            rows = [views.signal_row(s) for s in await self.queries.public_signals(MAX_RECENT, sym, since)]
            r = snap.result(sym)
            rep = await self.queries.performance(sym, days)
            return self._json(self._etag(snap.ts, f"symbol-{sym}-{days}"), {
                "symbol": sym, "windowDays": days, "generatedAt": views.iso(snap.ts),
                "pressure": None if r is None else api_item(r, self.score_cfg),
                "signals": rows, "count": len(rows),
                "performance": {"closed": rep["closed"], "open": rep["open"], "follow": rep["follow"]["overall"],
                                "fade": rep["fade"]["overall"]},
                "note": "live signals only; performance: closed signals of the window, net bps after fees, "
                        "slippage and funding (win rate = TP1 / (TP1 + SL), timeouts excluded)"})
        return self._send(request, await self._cached(self._cache, ("api-symbol", snap.ts, sym, days), build))

    async def healthz(self, request: web.Request) -> web.Response:
        snap = self._observe()
        age = self.age_s()
        ok = age is not None and age < 3 * self.interval_s
        body = {"status": "ok" if ok else "starting" if age is None else "stale", "ts": snap.ts,
                "updated": views.iso(snap.ts), "ageSeconds": None if age is None else round(age, 1),
                "intervalSeconds": self.interval_s, "symbols": len(snap.results)}
        return web.Response(status=200 if ok else 503, body=_json_bytes(body), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------------------------------ static files
    def _load_static(self) -> dict[str, Cached]:
        out = {}
        folder = resources.files(__package__) / "static"
        for name, ctype in STATIC_FILES.items():
            body = (folder / name).read_bytes()
            out[name] = Cached(f'"{hashlib.sha256(body).hexdigest()[:16]}"', body,
                               f"{ctype}; charset=utf-8" if ctype.startswith("text/") else ctype,
                               gzip.compress(body, 9) if ctype.startswith("text/") else None)
        return out

    async def static(self, request: web.Request) -> web.Response:
        c = self._static.get(request.match_info["name"])
        if c is None:
            raise Problem(404, "not found")
        return self._send(request, c, "public, max-age=86400")

    async def favicon(self, request: web.Request) -> web.Response:
        return self._send(request, self._static["favicon.svg"], "public, max-age=86400")
