"""The fault matrix, exchange side: each fault injected into the Binance-shaped server on loopback, met by
the real client, collector, cycle (and engine, CLI where the row is about them). Requests are counted at
the server. Pauses and back-offs run on a `FakeClock` shared by the client and the server, so nothing here
waits in real time except the one test that is about real time (a trickling body).

docs/reliability.md ("Exchange") lists each row with the test that shows it."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from contextlib import asynccontextmanager

import pytest

from bot.clock import FakeClock
from bot.config import Config, ExchangeConfig
from bot.cycle import CollectorSource, NothingScored, cycle_budget_s, run_cycle
from bot.engine import Engine
from bot.exchange.binance import BinanceClient, BinanceError, CycleStopped, parse_retry_after
from bot.market import MarketCollector
from bot.demo_market.binance_server import BinanceSimServer, Faults
from bot.demo_market.market import MarketSimulator
from bot.store import Store

N_SYMBOLS = 12       # the market of most tests here: a symbol dropped or kept stands out as well among 12
WIDE = 40            # the tests that show a refusal costs a few requests, never some per symbol


class Rig:
    """One loopback exchange, one client and collector over a temporary store, one fake clock for all."""

    def __init__(self, server: BinanceSimServer, url: str, store: Store, cfg: Config, clock: FakeClock):
        self.server, self.store, self.cfg, self.clock = server, store, cfg, clock
        self.faults: Faults = server.faults
        self.client = BinanceClient(cfg.exchange, base_url=url, clock=clock)
        self.collector = MarketCollector(self.client, store, cfg)

    async def cycle(self, save: bool = True):
        return await run_cycle(self.cfg, self.client, self.store, self.collector, save=save)

    def sent(self, path: str = "", symbol: str | None = None) -> int:
        return self.server.count(path, symbol)


SHORT_BACKFILL_H = 2  # the cold start of the tests not about history: 2 h of it, not a day


def make_cfg(backfill_hours: int = SHORT_BACKFILL_H, **exchange) -> Config:
    return Config(exchange=ExchangeConfig(**{"timeout_s": 2.0, **exchange}), universe={"min_quote_volume": 0},
                  history={"backfill_hours": backfill_hours})


@asynccontextmanager
async def rigs(tmp_path, n_symbols: int):
    clock = FakeClock(time=time.time())
    server = BinanceSimServer(MarketSimulator(n_symbols=n_symbols, seed=3), Faults(), clock=clock.time)
    url = await server.start()
    store = Store(tmp_path / "t.db")
    made = []

    def make(backfill_hours: int = SHORT_BACKFILL_H, **exchange) -> Rig:
        r = Rig(server, url, store, make_cfg(backfill_hours, **exchange), clock)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            await r.client.aclose()
        store.close()
        await server.stop()


@pytest.fixture
async def rig(tmp_path):
    """Rigs over one market of N_SYMBOLS symbols."""
    async with rigs(tmp_path, N_SYMBOLS) as make:
        yield make


@pytest.fixture
async def wide_rig(tmp_path):
    """Rigs over one market of WIDE symbols: far more than the requests in flight at once."""
    async with rigs(tmp_path, WIDE) as make:
        yield make


# ------------------------------------------------------------------------------------ bad values
BAD_VALUES = [
    ("/fapi/v1/premiumIndex", "lastFundingRate", "NaN"),
    ("/fapi/v1/premiumIndex", "lastFundingRate", "1e308"),
    ("/fapi/v1/premiumIndex", "lastFundingRate", "-0.5"),          # 50 % per interval: no market's rate
    ("/fapi/v1/premiumIndex", "markPrice", "NaN"),
    ("/fapi/v1/premiumIndex", "markPrice", "1e308"),
    ("/fapi/v1/premiumIndex", "indexPrice", "Infinity"),
    ("/fapi/v1/premiumIndex", "indexPrice", "0"),
    ("/fapi/v1/premiumIndex", "time", "NaN"),
    ("/fapi/v1/premiumIndex", "time", 9_999_999_999_999),           # far from every other symbol's time
    ("/fapi/v1/openInterest", "openInterest", "NaN"),
    ("/fapi/v1/openInterest", "openInterest", float("inf")),        # a bare Infinity token in the JSON
    ("/fapi/v1/openInterest", "openInterest", "-3"),
    ("/fapi/v1/ticker/24hr", "priceChangePercent", "NaN"),
    ("/fapi/v1/ticker/24hr", "priceChangePercent", "-250"),
    ("/fapi/v1/ticker/24hr", "quoteVolume", "NaN"),
    ("/fapi/v1/ticker/24hr", "quoteVolume", float("nan")),          # a bare NaN token
]


@pytest.mark.parametrize("path,field,value", BAD_VALUES, ids=[f"{p.rsplit('/', 1)[-1]}.{f}={v}" for p, f, v in BAD_VALUES])
async def test_a_bad_value_drops_that_symbol_named_never_the_cycle(rig, path, field, value, caplog):
    r = rig()
    victim = r.server.sim.symbols()[7]
    await r.cycle()                                          # cold start (backfill) out of the way
    r.faults.add("value", path, symbol=victim, field=field, value=value, times=None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.market"):
        out = await r.cycle()
    scored = {x.symbol for x in out.results}
    assert victim not in scored and len(scored) == N_SYMBOLS - 1
    assert field in out.data.failed[victim] and set(out.data.failed) == {victim}
    assert any(victim in rec.getMessage() and field in rec.getMessage() for rec in caplog.records)
    # stored (no NaN reached the store), and its JSON is strict
    ts, latest = r.store.latest_scores()
    assert ts == out.ts and len(latest) == N_SYMBOLS - 1
    json.dumps(out.result_dicts(), allow_nan=False)


async def test_bad_history_rows_are_skipped_the_symbol_is_still_scored(rig, caplog):
    r = rig(backfill_hours=24)                                  # a day of history, as by default
    victim = r.server.sim.symbols()[3]
    r.faults.add("value", "/futures/data/openInterestHist", symbol=victim, field="sumOpenInterest", value="NaN")
    out = await r.cycle()
    assert victim in {x.symbol for x in out.results} and not out.data.failed
    assert f"openInterestHist ({victim}): 289 row(s) with bad values skipped" in caplog.text
    lo, hi = r.store.history_coverage()[victim]
    assert lo == hi                                  # only this cycle's own point: nothing NaN was stored
    r.clock.advance(301)                             # the backfill is tried again after its back-off
    await r.cycle()
    lo, hi = r.store.history_coverage()[victim]
    assert hi - lo >= 23 * 3_600_000


async def test_a_bad_value_in_run_names_the_symbol_and_the_cycle_commits(rig, caplog):
    r = rig()
    victim = r.server.sim.symbols()[9]
    r.faults.add("value", "/fapi/v1/premiumIndex", symbol=victim, field="markPrice", value="NaN", times=None)
    engine = Engine(r.cfg, r.store, r.client, lambda: [], source=CollectorSource(r.cfg, r.client, r.store, r.collector))
    with caplog.at_level(logging.WARNING):
        await engine.scheduled_cycle()
    assert engine.cycles_run == 1 and r.store.last_cycle()["failed"].keys() == {victim}
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert any(f"{victim}: bad market data: markPrice 'NaN'" in rec.getMessage() for rec in caplog.records)


# ------------------------------------------------------------------------------------ refusals
async def test_429_on_every_request_costs_a_handful_of_requests_not_one_per_symbol(wide_rig):
    r = wide_rig()
    await r.cycle()
    r.server.reset_counts()
    r.faults.add("429", times=None, retry_after=1)
    with pytest.raises(CycleStopped) as e:
        await r.cycle()
    sent = r.sent()
    assert sent <= 2 + r.cfg.exchange.stop_after_refusals            # was 5 tries x every symbol (1,420 for 284)
    assert re.match(r"exchange refusing requests: HTTP 429 ×3, cycle stopped after \d requests, next try in 1s \(last: "
                    r"/fapi/v1/\S+: rate limited \(HTTP 429\)", str(e.value)), str(e.value)
    # the next cycle tries again, as few times; once the exchange answers, everything is back
    with pytest.raises(CycleStopped):
        await r.cycle()
    assert r.sent() - sent <= 2 + r.cfg.exchange.stop_after_refusals
    r.faults.clear()
    r.clock.advance(5)
    out = await r.cycle()
    assert len(out.results) == WIDE


async def test_418_stops_everything_until_the_ban_ends(wide_rig):
    r = wide_rig()
    await r.cycle()
    r.server.reset_counts()
    r.faults.add("418", times=None, retry_after=None)            # "banned until" now + 120 s, no header
    with pytest.raises(CycleStopped, match="HTTP 418"):
        await r.cycle()
    first = r.sent()
    assert first <= 2 + r.cfg.exchange.stop_after_refusals
    assert r.client.paused_for == pytest.approx(120, abs=1)
    # a longer ban ("banned until" +600 s) is longer than a cycle's budget: no request at all until it ends
    r.faults.clear()
    r.faults.add("418", times=None, retry_after=600)
    r.clock.advance(121)
    with pytest.raises(CycleStopped, match="HTTP 418"):
        await r.cycle()
    second = r.sent() - first
    assert second <= 2
    with pytest.raises(CycleStopped, match=r"exchange asked us to wait 600s \(IP banned \(HTTP 418\)\), longer than "
                                           r"the 43s left of this cycle's budget, cycle stopped after 0 requests"):
        await r.cycle()
    assert r.sent() == first + second                            # nothing sent during the ban
    r.faults.clear()
    r.clock.advance(601)
    assert len((await r.cycle()).results) == WIDE


async def test_a_permanent_503_on_open_interest_stops_the_cycle_after_a_few(wide_rig):
    r = wide_rig()
    await r.cycle()
    r.server.reset_counts()
    r.faults.add("5xx", "/fapi/v1/openInterest", status=503, times=None)
    with pytest.raises(CycleStopped, match=r"exchange failing requests: HTTP 503 ×\d+, cycle stopped after"):
        await r.cycle()
    oi = r.sent("/fapi/v1/openInterest")
    # bounded by what is in flight at once, never the universe times the retries (was 1,420 in 23 s)
    assert oi <= r.cfg.exchange.max_concurrency + r.cfg.exchange.stop_after_refusals
    assert oi < WIDE


async def test_5xx_back_off_grows_and_is_shared(rig):
    r = rig(max_retries=4)
    r.faults.add("5xx", "/fapi/v1/exchangeInfo", status=503, times=None)
    with pytest.raises(BinanceError, match="server error"):
        await r.client.exchange_info()
    waits = r.clock.sleeps
    assert len(waits) == 4 and all(b > a for a, b in zip(waits, waits[1:]))      # 0.5, 1, 2, 4 s (jittered)
    assert r.sent("/fapi/v1/exchangeInfo") == 5
    # everyone shares it: the next request to any endpoint waits the back-off out first
    assert r.client.paused_for > 0
    await r.client.ticker_24hr()
    assert len(r.clock.sleeps) == 5


async def test_one_symbol_failing_for_good_does_not_stop_the_cycle(rig):
    r = rig()
    await r.cycle()
    victim = r.server.sim.symbols()[4]
    r.faults.add("5xx", "/fapi/v1/openInterest", symbol=victim, status=503, times=None)
    out = await r.cycle()
    assert len(out.results) == N_SYMBOLS - 1 and "server error" in out.data.failed[victim]
    assert r.sent("/fapi/v1/openInterest", victim) == 2 + r.cfg.exchange.max_retries     # 1 + retries this cycle


@pytest.mark.parametrize("header", ["inf", "1e9", "-1", "2.5", "Wed, 21 Oct 2026 07:28:00 GMT"])
async def test_retry_after_that_is_not_whole_seconds_reads_as_the_default(rig, header):
    r = rig()
    r.faults.add("429", "/fapi/v1/premiumIndex", retry_after=header)
    body = await r.client.premium_index()
    assert isinstance(body, list) and r.clock.sleeps == [2.0]        # not forever, not 1e9 s


async def test_a_huge_retry_after_is_capped_and_ends_the_cycle_instead_of_sleeping(rig):
    r = rig(max_retry_after_s=300)
    r.faults.add("429", retry_after=999_999_999, times=None)
    started = time.monotonic()
    with pytest.raises(CycleStopped) as e:
        await r.cycle()
    assert time.monotonic() - started < 10 and not r.clock.sleeps        # no sleep at all: scan never hangs
    budget = cycle_budget_s(r.cfg)
    assert f"exchange asked us to wait 300s (rate limited (HTTP 429)), longer than the {budget:.0f}s left" in str(e.value)
    assert r.sent() <= 2


async def test_retry_after_beyond_the_budget_in_run_is_one_line_with_the_reason(rig, caplog):
    r = rig()
    r.faults.add("429", retry_after=100_000, times=None)
    engine = Engine(r.cfg, r.store, r.client, lambda: [], source=CollectorSource(r.cfg, r.client, r.store, r.collector))
    with caplog.at_level(logging.ERROR):
        await engine.scheduled_cycle()
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "exchange asked us to wait 300s" in errors[0] and "timed out" not in errors[0]
    assert r.store.last_cycle() is None                                   # nothing committed


def test_parse_retry_after():
    assert parse_retry_after("7", 300) == 7 and parse_retry_after(" 12 ", 300) == 12
    assert parse_retry_after("999999", 300) == 300
    for bad in (None, "", "inf", "nan", "1e9", "-1", "2.5", "0x10", "soon"):
        assert parse_retry_after(bad, 300) is None, bad


# ------------------------------------------------------------------------------------ slow bodies
async def test_a_trickling_body_cannot_outlast_the_request_timeout(rig):
    r = rig(timeout_s=0.5, max_retries=1)
    r.faults.trickle_interval_s = 0.2                            # the body would take ~12 s
    victim = r.server.sim.symbols()[2]
    await r.cycle()
    r.faults.add("trickle", "/fapi/v1/openInterest", symbol=victim, times=None)
    started = time.monotonic()
    out = await r.cycle()
    took = time.monotonic() - started
    assert "timed out after 0.5s" in out.data.failed[victim] and len(out.results) == N_SYMBOLS - 1
    assert took < 5                                              # two tries of 0.5 s, not 2 x 12 s


# ------------------------------------------------------------------------------------ empty cycles
async def test_a_cycle_where_every_symbol_failed_keeps_the_last_good_scores(rig):
    r = rig()
    good = await r.cycle()
    r.faults.add("value", "/fapi/v1/premiumIndex", field="markPrice", value="NaN", times=None)   # every symbol
    r.clock.advance(300)
    with pytest.raises(NothingScored, match=rf"no symbol could be scored this cycle \({N_SYMBOLS} failed"):
        await r.cycle()
    ts, latest = r.store.latest_scores()
    assert ts == good.ts and len(latest) == N_SYMBOLS


# ------------------------------------------------------------------------------------ listings
async def test_a_new_listing_is_scored_in_the_cycle_it_first_trades(rig):
    r = rig(backfill_hours=24)                                  # a day of history, as by default
    newcomer = r.server.sim.symbols()[11]
    r.faults.unlisted.add(newcomer)
    first = await r.cycle()
    assert newcomer not in {x.symbol for x in first.results} and r.sent("/fapi/v1/exchangeInfo") == 1
    r.faults.unlisted.discard(newcomer)                          # listed now (with an hour of history)
    r.faults.listed_at[newcomer] = r.server.sim.now_ms() - 3_600_000
    second = await r.cycle()                                     # long before the hourly refresh is due
    assert newcomer in {x.symbol for x in second.results}
    assert r.sent("/fapi/v1/exchangeInfo") == 2 and r.sent("/futures/data/openInterestHist", newcomer) == 1
    await r.cycle()
    assert r.sent("/fapi/v1/exchangeInfo") == 2                  # one refresh for one listing, not every cycle
    assert r.sent("/futures/data/openInterestHist", newcomer) == 1


async def test_a_symbol_with_no_history_is_retried_with_back_off_not_every_cycle(rig):
    r = rig(backfill_hours=24)                                  # a day of history, as by default
    bare = r.server.sim.symbols()[6]
    r.faults.listed_at[bare] = r.server.sim.now_ms() + 10 ** 9   # openInterestHist: [] for it
    out = await r.cycle()
    assert bare in {x.symbol for x in out.results}                # scored at once, changes unknown yet
    hist = lambda: r.sent("/futures/data/openInterestHist", bare)   # noqa: E731
    assert hist() == 1
    for _ in range(3):
        await r.cycle()
    assert hist() == 1                                           # not repeated every cycle
    r.clock.advance(301)
    await r.cycle()
    assert hist() == 2                                           # after 5 min ...
    r.clock.advance(301)
    await r.cycle()
    assert hist() == 2                                           # ... then 10 min ...
    r.clock.advance(300)
    await r.cycle()
    assert hist() == 3


async def test_a_failing_backfill_is_retried_with_back_off_and_stops_once_it_works(rig):
    r = rig(backfill_hours=24)                                  # a day of history, as by default
    sym = r.server.sim.symbols()[8]
    fault = r.faults.add("missing_symbol", "/futures/data/openInterestHist", symbol=sym, times=None)
    await r.cycle()
    await r.cycle()
    assert r.sent("/futures/data/openInterestHist", sym) == 1
    r.faults.queue.remove(fault)
    r.clock.advance(301)
    out = await r.cycle()
    assert r.sent("/futures/data/openInterestHist", sym) == 2
    assert next(x for x in out.data.inputs if x.symbol == sym).oi_change_24h is not None
    r.clock.advance(3600)
    await r.cycle()
    assert r.sent("/futures/data/openInterestHist", sym) == 2    # done: never again


# ------------------------------------------------------------------------------------ scan --json
class _ServerThread:
    """The loopback exchange on its own loop in a thread, for a CLI call that runs its own asyncio.run."""

    def __init__(self, server: BinanceSimServer):
        self.server, self.loop = server, asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_scan_json_never_carries_nan_and_names_the_dropped_symbol(tmp_path, capsys):
    from bot import cli
    server = BinanceSimServer(MarketSimulator(n_symbols=20, seed=3), Faults())
    victim = server.sim.symbols()[5]
    server.faults.add("value", "/fapi/v1/premiumIndex", symbol=victim, field="lastFundingRate", value="NaN", times=None)
    server.faults.add("value", "/fapi/v1/openInterest", symbol=server.sim.symbols()[6], field="openInterest",
                      value=float("inf"), times=None)
    cfg_file = tmp_path / "bot.yaml"
    cfg_file.write_text("universe: {min_quote_volume: 0}\n")
    with _ServerThread(server) as url:             # (the logging the CLI sets up is put back by conftest)
        rc = cli.main(["--config", str(cfg_file), "scan", "--exchange-url", url, "--db", str(tmp_path / "s.db"),
                       "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rows = json.loads(out.out, parse_constant=lambda c: pytest.fail(f"bare {c} in scan --json"))
    assert len(rows) == 18 and victim not in {x["symbol"] for x in rows}
    assert f"{victim}: bad market data: lastFundingRate 'NaN'" in out.err


async def test_503_on_everything_stops_within_a_few_requests_and_the_next_cycle_at_its_first(wide_rig):
    r = wide_rig()
    await r.cycle()
    r.server.reset_counts()
    r.faults.add("5xx", status=503, times=None)
    with pytest.raises(CycleStopped, match=r"exchange failing requests: HTTP 503 ×7, cycle stopped after [78] requests"):
        await r.cycle()                            # premiumIndex + ticker: more failures in a row than one request makes
    sent = r.sent()
    assert sent <= 1 + r.cfg.exchange.stop_after_refusals + r.cfg.exchange.max_retries
    r.clock.advance(60)
    with pytest.raises(CycleStopped, match=r"HTTP 503 ×[12], cycle stopped after [12] requests?,"):
        await r.cycle()                            # still down: the first failure tells (two were sent at once)
    assert r.sent() - sent <= 2
