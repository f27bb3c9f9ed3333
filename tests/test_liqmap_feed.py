"""LiqMap inputs over loopback: the force-order stream (wire format, side convention, reconnect), the refresh's
exchange budget, the stored view."""
import asyncio
import logging

import pytest

from bot.config import Config
from bot.demo_market.binance_server import BinanceSimServer
from bot.demo_market.liquidations import force_orders
from bot.demo_market.market import MarketSimulator
from bot.exchange.binance import BinanceClient
from bot.exchange.force_orders import BadForceOrder, ForceOrderRecorder, parse_force_order
from bot.liqmap import text
from bot.liqmap_feed import refresh, stored_view, stream_url_for
from bot.store import Store
from conftest import until

BINANCE_DOC_EVENT = {"e": "forceOrder", "E": 1568014460893, "o": {
    "s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": "9910", "ap": "9910", "X": "FILLED",
    "l": "0.014", "z": "0.014", "T": 1568014460893}}


def test_a_sell_force_order_is_a_long_liquidated_and_a_buy_a_short():
    p = parse_force_order(BINANCE_DOC_EVENT)
    assert (p.symbol, p.side, p.price, p.qty, p.ts) == ("BTCUSDT", "long", 9910.0, 0.014, 1568014460893)
    assert p.notional == pytest.approx(138.74)
    buy = {**BINANCE_DOC_EVENT, "o": {**BINANCE_DOC_EVENT["o"], "S": "BUY"}}
    assert parse_force_order(buy).side == "short"


@pytest.mark.parametrize("bad, why", [
    ({"e": "aggTrade"}, "not a forceOrder event"),
    ({"e": "forceOrder"}, "without its order object"),
    ({"e": "forceOrder", "o": {**BINANCE_DOC_EVENT["o"], "S": "HOLD"}}, "neither BUY nor SELL"),
    ({"e": "forceOrder", "o": {**BINANCE_DOC_EVENT["o"], "T": None}}, "bad or missing field"),
    ({"e": "forceOrder", "o": {**BINANCE_DOC_EVENT["o"], "ap": "0", "p": "-1"}}, "must be positive"),
])
def test_a_malformed_force_order_is_refused_naming_the_field(bad, why):
    with pytest.raises(BadForceOrder, match=why):
        parse_force_order(bad)


def test_the_simulator_speaks_the_binance_wire_format():
    sim = MarketSimulator(n_symbols=30, seed=7)
    events = force_orders(sim, "ETHUSDT", sim.now_ms() - 86_400_000, sim.now_ms())
    assert events and set(events[0]) == {"e", "E", "o"}
    assert set(events[0]["o"]) == {"s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"}
    seconds = [e["o"]["T"] // 1000 for e in events]
    assert len(seconds) == len(set(seconds))                     # at most one print per symbol per second
    assert all(parse_force_order(e) for e in events)


START = 1_794_999_960_000          # a fixed minute: the same market on every run


@pytest.mark.parametrize("symbol", ["BTCUSDT", "kickoff"])
def test_an_hour_of_force_orders_is_the_same_after_its_neighbours_as_alone(symbol):
    def market():
        return MarketSimulator(n_symbols=30, seed=7, start_ms=START, clock=lambda: 0.0)
    warm = market()
    symbol = warm.kickoff_episodes()[0].symbol if symbol == "kickoff" else symbol    # a cascade of its own
    hour = 3_600_000
    chunks = [force_orders(warm, symbol, START + h * hour, START + (h + 1) * hour) for h in range(-2, 6)]
    alone = force_orders(market(), symbol, START + 5 * hour, START + 6 * hour)
    assert chunks[-1] == alone and alone                                     # after hours H-7..H-1, or cold
    span = force_orders(market(), symbol, START - 2 * hour + 1234, START + 6 * hour)   # one long range, cold
    assert [e for c in chunks for e in c if e["o"]["T"] >= START - 2 * hour + 1234] == span
    again = force_orders(warm, symbol, START - 2 * hour, START - hour)       # an earlier hour, asked again
    assert again == chunks[0]
    far = force_orders(warm, symbol, START + 200 * hour, START + 201 * hour)   # a jump: its tape starts afresh
    assert far == force_orders(market(), symbol, START + 200 * hour, START + 201 * hour)
    assert force_orders(warm, symbol, START + 5 * hour, START + 6 * hour) == alone     # and back


def test_a_market_keeps_a_bounded_number_of_force_order_tapes(monkeypatch):
    from bot.demo_market import liquidations
    monkeypatch.setattr(liquidations, "TAPES_PER_MARKET", 1)
    sim = MarketSimulator(n_symbols=30, seed=7, start_ms=START, clock=lambda: 0.0)
    first = [force_orders(sim, s, START, START + 3_600_000) for s in ("BTCUSDT", "ETHUSDT", "BTCUSDT")]
    assert list(liquidations._TAPES[sim]) == ["BTCUSDT"] and first[0] == first[2]


def test_the_stream_follows_the_exchange_root_only_when_left_at_binance_s_default():
    default = Config().liqmap.stream_url
    assert stream_url_for(default, "https://fapi.binance.com") == "wss://fstream.binance.com/ws"
    assert stream_url_for(default, "http://127.0.0.1:8081") == "ws://127.0.0.1:8081/ws"
    assert stream_url_for("wss://mirror.example/ws", "http://127.0.0.1:8081") == "wss://mirror.example/ws"


async def test_a_dropped_stream_reconnects_and_loses_only_the_gap(caplog):
    caplog.set_level(logging.INFO, logger="bot.exchange.force_orders")
    sim = MarketSimulator(n_symbols=30, seed=7, speed=14_400)      # four simulated hours a second: prints flow
    got = []

    async def sink(batch):
        got.extend(batch)

    async with BinanceSimServer(sim) as server:
        server.force_orders.tick_s = 0.05
        server.force_orders.symbols = ["BTCUSDT", "ETHUSDT"]
        url = stream_url_for(Config().liqmap.stream_url, server.base_url)
        rec = ForceOrderRecorder(url, ["BTCUSDT", "ETHUSDT"], sink, backoff_s=(0.02, 0.1), flush_s=0.05,
                                 now_ms=sim.now_ms)
        task = asyncio.create_task(rec.run())
        try:
            await until(lambda: len(got) >= 20, timeout=20, what="prints before the drop")
            assert await server.force_orders.drop() == 1
            await until(lambda: rec.connections == 2, timeout=20, what="the reconnect")
            n = len(got)
            await until(lambda: len(got) >= n + 60, timeout=20, what="prints after the reconnect")
            await server.force_orders.drop()                        # the end: all that was sent has been read
            await until(lambda: not rec.connected.is_set(), timeout=20, what="the second close")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    (lost, back), *_ = rec.gaps
    assert "force-order stream back after" in caplog.text and "are lost" in caplog.text
    (a0, a1), (b0, b1) = server.force_orders.served          # what each connection carried, in simulated ms
    assert a1 <= lost <= back and b0 <= back                  # the logged gap covers what neither carried
    expected = {parse_force_order(e) for s in ("BTCUSDT", "ETHUSDT")
                for a, b in ((a0, a1), (b0, b1)) for e in force_orders(sim, s, a, b)}
    assert len(got) == len(set(got)) and set(got) == expected and len(got) >= 80     # nothing else lost or doubled


async def test_refresh_weight_and_the_stored_view():
    sim = MarketSimulator(n_symbols=30, seed=7)
    cfg = Config()
    store = Store(":memory:")
    async with BinanceSimServer(sim) as server, BinanceClient(cfg.exchange, base_url=server.base_url) as client:
        first = await refresh(cfg, client, store, sim.now_ms())
        assert first.steps == 2 * (7 * 288 + 1)                                # a week of 5-minute steps a symbol
        server.reset_counts()
        again = await refresh(cfg, client, store, sim.now_ms())
        assert (again.weight, again.requests) == (2, 4)                        # weight 1 + 0 per symbol
        assert server.used_weight == 2 and server.count("/futures/data/openInterestHist") == 2
    store.add_liq_prints(parse_force_order(e) for e in force_orders(sim, "BTCUSDT", sim.now_ms() - 86_400_000,
                                                                     sim.now_ms()))
    v = stored_view(cfg, store, "BTCUSDT", "24h")
    assert len(v.steps) == 289 and v.prints and v.map.accuracy.share is not None
    assert "With BTC at $" in text(v.reading) and "a floor" in v.footnote
    store.prune_liq(sim.now_ms())
    with pytest.raises(LookupError, match="no LiqMap data for BTCUSDT"):
        stored_view(cfg, store, "BTCUSDT", "24h")
    store.close()


def test_the_cli_writes_the_png_and_prints_the_read(tmp_path, capsys):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "btc.png"
    run = subprocess.run([sys.executable, "-m", "bot", "liqmap", "BTCUSDT", "--simulate", "--out", str(out)], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("With BTC at $") and "nearest large liquidation cluster below price sits at $" in lines[0]
    assert "above price" in lines[1] and lines[2].startswith("Bias: ")
    assert "fell inside the top-25% estimated bands (by chance:" in lines[3] and "a floor" in lines[3]
    assert lines[4] == f"wrote {out}" and out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.stat().st_size > 50_000
    from bot.cli import main                       # the error path, in this process (the logging it sets up is
    assert main(["liqmap", "FOO", "--simulate", "--out", str(out)]) == 1     # put back by conftest)
    assert "FOOUSDT): Binance error -1121: Invalid symbol." in capsys.readouterr().err


def test_a_market_s_force_order_tapes_go_with_it():
    import gc
    import weakref

    from bot.demo_market import liquidations
    sim = MarketSimulator(n_symbols=30, seed=7, start_ms=START, clock=lambda: 0.0)
    force_orders(sim, "BTCUSDT", START, START + 3_600_000)
    assert sim in liquidations._TAPES
    gone = weakref.ref(sim)
    del sim
    gc.collect()
    assert gone() is None
