"""The real Binance client and market collector against the Binance-shaped simulator on loopback.

Pauses and retry back-off run on a `FakeClock`: the tests check how long the client waited without
waiting themselves."""
from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from bot.clock import FakeClock
from bot.config import Config, ExchangeConfig
from bot.cycle import run_cycle
from bot.exchange.binance import BinanceClient, BinanceError, CycleStopped
from bot.market import MarketCollector
from bot.demo_market.binance_server import BinanceSimServer, Faults
from bot.demo_market.market import MarketSimulator
from bot.store import Store

FAST = ExchangeConfig(timeout_s=1.0, max_retries=3)


@pytest.fixture
async def sim_server():
    server = BinanceSimServer(MarketSimulator(n_symbols=40, seed=3), Faults())
    url = await server.start()
    yield server, url
    await server.stop()


@pytest.fixture
async def small_sim_server():
    """A 12-symbol market, for the tests about each symbol's history (not about how many there are)."""
    server = BinanceSimServer(MarketSimulator(n_symbols=12, seed=3), Faults())
    url = await server.start()
    yield server, url
    await server.stop()


@pytest.fixture
def cfg():
    return Config(exchange=FAST, universe={"min_quote_volume": 0})


async def test_weight_header_is_tracked(sim_server):
    server, url = sim_server
    async with BinanceClient(FAST, base_url=url) as c:
        await c.premium_index()
        await c.ticker_24hr()
    assert c.stats.requests == 2 and c.stats.weight == 50
    assert c.stats.max_used_weight_1m >= 50


async def test_429_with_retry_after_pauses_then_succeeds(sim_server, caplog):
    server, url = sim_server
    server.faults.add("429", "/fapi/v1/premiumIndex", retry_after=1)
    clock = FakeClock()
    async with BinanceClient(FAST, base_url=url, clock=clock) as c:
        t = clock.monotonic()
        body = await c.premium_index()
    assert isinstance(body, list) and len(body) > 10
    assert clock.monotonic() - t >= 1.0           # honoured Retry-After (back-off, then the rest of the pause)
    assert c.stats.retries == 1 and c.paused_for == 0
    assert any("rate limited (HTTP 429)" in r.getMessage() for r in caplog.records)


async def test_418_ban_pauses_all_requests_until_the_ban_ends(sim_server):
    server, url = sim_server
    clock = FakeClock()
    server.clock = clock.time                      # the exchange and we agree on the time
    server.faults.add("418", "/fapi/v1/openInterest", retry_after=None)        # "banned until" +120 s, no header
    server.faults.add("418", "/fapi/v1/openInterest", retry_after="soon")      # a header that says nothing
    async with BinanceClient(ExchangeConfig(max_retries=0), base_url=url, clock=clock) as c:
        with pytest.raises(BinanceError, match=r"rate limited \(HTTP 418\).*banned") as e:
            await c.open_interest("BTCUSDT")
        # no Retry-After: the ban's end comes from the body ("banned until <ms>"), and nothing goes out before it
        assert e.value.status == 418 and c.paused_for == pytest.approx(120, abs=0.01)
        sent = len(server.requests)
        with pytest.raises(BinanceError, match="banned"):
            await c.open_interest("BTCUSDT")          # waits the ban out first, then meets the second ban
        assert len(server.requests) == sent + 1 and clock.sleeps[0] == pytest.approx(120, abs=0.01)
        body = await c.premium_index()              # the next request, to any endpoint, waits it out first
        assert isinstance(body, list) and len(clock.sleeps) == 2 and c.paused_for == 0


async def test_418_with_retry_after_waits_then_succeeds(sim_server):
    server, url = sim_server
    server.faults.add("418", "/fapi/v1/openInterest", retry_after=1)
    clock = FakeClock()
    async with BinanceClient(FAST, base_url=url, clock=clock) as c:
        t = clock.monotonic()
        body = await c.open_interest("BTCUSDT")
    assert body["symbol"] == "BTCUSDT" and clock.monotonic() - t >= 1.0


async def test_used_weight_near_the_limit_pauses_until_the_minute_rolls_over():
    """Other clients on our IP count too: a used-weight header at the headroom holds every request
    until the next minute window (plus half a second)."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        used = 1920 if len(seen) == 1 else 100           # 2400 * 0.8 headroom on the first reply
        return httpx.Response(200, json=[], headers={"X-MBX-USED-WEIGHT-1M": str(used)})

    clock = FakeClock(time=1_800_000_030.0)              # 30 s into a minute
    async with BinanceClient(ExchangeConfig(), base_url="http://binance.test", clock=clock,
                             transport=httpx.MockTransport(handler)) as c:
        await c.premium_index()
        assert c.paused_for == 30.5 and c.stats.max_used_weight_1m == 1920
        await c.premium_index()
    assert clock.sleeps == [30.5] and len(seen) == 2 and c.paused_for == 0


async def test_5xx_and_malformed_json_are_retried(sim_server):
    server, url = sim_server
    server.faults.add("5xx", "/fapi/v1/ticker/24hr", status=502)
    server.faults.add("malformed", "/fapi/v1/ticker/24hr")
    clock = FakeClock()
    async with BinanceClient(FAST, base_url=url, clock=clock) as c:
        body = await c.ticker_24hr()
    assert isinstance(body, list) and c.stats.retries == 2
    assert len(clock.sleeps) == 2 and all(0 <= s <= 5 for s in clock.sleeps)   # jittered back-off, capped


async def test_timeout_is_retried_and_reported(sim_server):
    server, url = sim_server
    server.faults.add("timeout", "/fapi/v1/exchangeInfo", times=10)
    cfg = ExchangeConfig(timeout_s=0.3, max_retries=1)
    async with BinanceClient(cfg, base_url=url, clock=FakeClock()) as c:     # the timeouts are real, the back-off not
        with pytest.raises(BinanceError, match=r"exchangeInfo: timed out after 0.3s"):
            await c.exchange_info()
    assert c.stats.retries == 1


async def test_refused_and_dropped_connections_are_network_errors_not_timeouts():
    """httpx-aiohttp reports a refused connect as httpx.ConnectTimeout: the client says what happened."""
    async def hang_up(reader, writer):
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    dropping = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    with socket.socket() as s:                                  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        refusing = f"http://127.0.0.1:{s.getsockname()[1]}"
    try:
        for url, what in ((refusing, "Cannot connect to host"), (dropping, "Server disconnected")):
            async with BinanceClient(ExchangeConfig(max_retries=0), base_url=url, clock=FakeClock()) as c:
                with pytest.raises(BinanceError, match=r"premiumIndex: network error: ") as e:
                    await c.premium_index()
            assert what in str(e.value) and "timed out" not in str(e.value) and e.value.retryable
            assert c.stats.refusals == {"network error": 1}
    finally:
        server.close()
        await server.wait_closed()


async def test_binance_error_body_surfaces_and_is_not_retried(sim_server):
    server, url = sim_server
    async with BinanceClient(FAST, base_url=url) as c:
        with pytest.raises(BinanceError) as e:
            await c.open_interest("NOPEUSDT")
    assert "Binance error -1121: Invalid symbol." in str(e.value) and "NOPEUSDT" in str(e.value)
    assert e.value.code == -1121 and c.stats.retries == 0


async def test_one_symbol_failing_never_sinks_the_cycle(sim_server, cfg, tmp_path):
    server, url = sim_server
    sim = server.sim
    victim = sim.symbols()[5]
    server.faults.add("missing_symbol", "/fapi/v1/openInterest", symbol=victim, times=100)
    store = Store(tmp_path / "t.db")
    async with BinanceClient(cfg.exchange, base_url=url) as c:
        out = await run_cycle(cfg, c, store)
    scored = {r.symbol for r in out.results}
    assert victim not in scored and len(scored) >= 30
    assert "Invalid symbol" in out.data.failed[victim]


async def test_cold_start_backfills_then_steady_state_costs_n_plus_2(small_sim_server, cfg, tmp_path):
    server, url = small_sim_server
    store = Store(tmp_path / "t.db")
    async with BinanceClient(cfg.exchange, base_url=url) as c:
        collector = MarketCollector(c, store, cfg)
        first = await run_cycle(cfg, c, store, collector)
        n = first.data.universe_size
        # changes over all three windows exist at once, from the backfill
        assert all(i.oi_change_1h is not None and i.oi_change_24h is not None for i in first.data.inputs)
        assert first.requests >= n + 2 + n        # backfill: one openInterestHist per symbol
        server.reset_counts()
        second = await run_cycle(cfg, c, store, collector)
    paths = [p for p, _ in server.requests]
    assert second.requests == len(paths) == n + 2
    assert paths.count("/fapi/v1/openInterest") == n and "/futures/data/openInterestHist" not in paths


async def test_oi_changes_are_in_contracts_and_match_history(small_sim_server, cfg, tmp_path):
    server, url = small_sim_server
    store = Store(tmp_path / "t.db")
    async with BinanceClient(cfg.exchange, base_url=url) as c:
        out = await run_cycle(cfg, c, store)
    inp = out.data.inputs[0]
    raw = out.data.raw[inp.symbol]["oi"]
    assert inp.oi_change_1h == pytest.approx(raw["now"][1] / raw["1h"][1] - 1)
    assert abs(raw["1h"][0] - (raw["now"][0] - 3_600_000)) <= 10 * 60_000   # within the stated tolerance


async def test_no_history_in_tolerance_means_missing_not_zero(cfg, tmp_path):
    from bot.market import nearest
    from bot.records import OIPoint
    pts = [OIPoint("X", 0, 1.0, 1.0)]
    assert nearest(pts, 3_600_000, 10 * 60_000) is None


async def test_malformed_all_symbols_reply_is_a_clear_error(sim_server, cfg, tmp_path):
    server, url = sim_server
    server.faults.add("malformed", "/fapi/v1/premiumIndex", times=20)
    store = Store(tmp_path / "t.db")
    async with BinanceClient(ExchangeConfig(timeout_s=1, max_retries=1), base_url=url, clock=FakeClock()) as c:
        with pytest.raises(BinanceError, match="premiumIndex: malformed JSON reply"):
            await run_cycle(cfg, c, store)


async def test_backfill_longer_than_one_page_pages_back_by_end_time(small_sim_server, tmp_path):
    server, url = small_sim_server
    cfg = Config(exchange=FAST, universe={"min_quote_volume": 0}, history={"backfill_hours": 48})
    store = Store(tmp_path / "t.db")
    async with BinanceClient(cfg.exchange, base_url=url) as c:
        await MarketCollector(c, store, cfg).warm_up()
    (sym, (lo, hi)), *_ = store.history_coverage().items()
    assert hi - lo >= 48 * 3_600_000 - 5 * 60_000             # 577 points of 5m, beyond one 500-row page
    assert server.count("/futures/data/openInterestHist", symbol=sym) == 2


async def test_universe_and_funding_intervals_refresh_once_the_interval_has_passed(sim_server, cfg, tmp_path):
    server, url = sim_server
    store = Store(tmp_path / "t.db")
    clock = FakeClock()
    async with BinanceClient(cfg.exchange, base_url=url, clock=clock) as c:
        collector = MarketCollector(c, store, cfg)
        assert collector.clock is clock                   # the client's clock, unless given one
        await collector.refresh_reference_data()
        clock.advance(cfg.exchange.funding_info_refresh_s - 1)
        await collector.refresh_reference_data()          # still fresh: nothing fetched
        assert server.count("/fapi/v1/fundingInfo") == 1 and server.count("/fapi/v1/exchangeInfo") == 1
        clock.advance(1)
        await collector.refresh_reference_data()
        assert server.count("/fapi/v1/fundingInfo") == 2 and server.count("/fapi/v1/exchangeInfo") == 2
    assert collector.universe


async def test_after_a_429_every_request_waits(sim_server):
    server, url = sim_server
    server.faults.add("429", "/fapi/v1/premiumIndex", retry_after=7)
    clock = FakeClock()
    async with BinanceClient(ExchangeConfig(max_retries=0), base_url=url, clock=clock) as c:
        with pytest.raises(BinanceError, match=r"HTTP 429"):
            await c.premium_index()
        assert c.paused_for == 7
        await c.ticker_24hr()                       # another endpoint: it waits too, then goes
    assert clock.sleeps == [7] and server.count() == 2


async def test_a_stopped_cycle_sends_nothing_more_until_the_next_cycle(sim_server):
    server, url = sim_server
    server.faults.add("429", retry_after=1, times=3)
    clock = FakeClock()
    async with BinanceClient(ExchangeConfig(max_retries=5, stop_after_refusals=3), base_url=url, clock=clock) as c:
        c.begin_cycle(budget_s=100)
        with pytest.raises(CycleStopped, match=r"^exchange refusing requests: HTTP 429 ×3, cycle stopped after 3 requests, "
                                               r"next try in 1s \(last: /fapi/v1/exchangeInfo: rate limited"):
            await c.exchange_info()
        with pytest.raises(CycleStopped):
            await c.premium_index()                 # the same cycle: refused without a request
        assert server.count() == 3 and c.stopped
        c.begin_cycle(budget_s=100)
        assert isinstance(await c.premium_index(), list) and server.count() == 4


async def test_a_pause_longer_than_the_cycle_budget_stops_instead_of_sleeping(sim_server):
    server, url = sim_server
    server.faults.add("429", retry_after=120)
    clock = FakeClock()
    async with BinanceClient(ExchangeConfig(), base_url=url, clock=clock) as c:
        c.begin_cycle(budget_s=60)
        with pytest.raises(CycleStopped, match=r"exchange asked us to wait 120s \(rate limited \(HTTP 429\)\), longer than "
                                               r"the 60s left of this cycle's budget, cycle stopped after 1 request, "
                                               r"next try in 120s") as e:
            await c.exchange_info()
        assert e.value.retry_in == 120 and clock.sleeps == [] and server.count() == 1
        c.begin_cycle(budget_s=None)               # no budget (a caller of its own): the pause is waited out
        assert isinstance(await c.exchange_info(), dict) and clock.sleeps == [120]
