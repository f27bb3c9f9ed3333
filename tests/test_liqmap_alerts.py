"""The opt-in LiqMap proximity rule (watchlist `liqmap_within_pct`): on a constructed map, who is told about
which cluster; with real stored steps, the alert is an outbox notice whose cooldown survives a restart."""
from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from bot.adapters.console import ConsoleSender
from bot.clock import FakeClock
from bot.config import Config
from bot.engine import Recipient, Route
from bot.liqmap import LiqMap, Params, Step
from bot.liqmap_alerts import ProximityAlerts, due, proximity_notice
from bot.outbox import DeliveryWorker
from bot.rules import FilterSubscriber
from bot.store import Store
from bot.watchlists import Watchlist

T = 1_800_000_000_000 - 1_800_000_000_000 % 300_000
NOW = datetime.fromtimestamp(T / 1000, timezone.utc)
PARAMS = Params((), 86_400_000, 0.002)


def constructed_map(price: float = 100.0) -> LiqMap:
    """Four bins a side; the top quartile is one bin each: longs at 99.7 (0.3 % below), shorts at 102 (2 % above)."""
    m = LiqMap(PARAMS, 0.25, last_ts=T, last_price=price)
    for side, levels in (("long", {99.7: 10e6, 98: 1e6, 97: 1e6, 96: 1e6}),
                         ("short", {100.3: 1e6, 102: 9e6, 103: 1e6, 104: 1e6})):
        for p, notional in levels.items():
            m.levels[(side, m.bin_of(p))] = notional
    return m


def who(name: str, **keys) -> Recipient:
    return Recipient(name, Watchlist(**keys), [Route("console", name)])


def test_the_rule_fires_per_recipient_distance_side_and_cooldown_on_a_constructed_map():
    maps = {"BTCUSDT": constructed_map()}
    recipients = [who("alice", liqmap_within_pct=0.5), who("bob", liqmap_within_pct=2.5, symbols=["BTCUSDT"]),
                  who("carol"),                                                     # not opted in
                  who("dave", liqmap_within_pct=5, symbols=["ETHUSDT"]),            # watches another symbol
                  who("erin", liqmap_within_pct=5, muted={"BTCUSDT": NOW + timedelta(hours=1)}),
                  who("frank", liqmap_within_pct=5, alerts=False),
                  who("gina", liqmap_within_pct=5, quiet_hours="00:00-23:59"),
                  Recipient("channel", FilterSubscriber.from_filter(Config().console), [Route("console", "c")])]
    got = [(p.recipient, p.cluster.side, round(p.cluster.price, 1), round(p.cluster.distance * 100, 1))
           for p in due(maps, recipients, {}, NOW)]
    assert got == [("alice", "long", 99.7, 0.3), ("bob", "long", 99.7, 0.3), ("bob", "short", 101.9, 1.9)]   # bin centres
    fired = {("bob", "BTCUSDT", "liqmap:long"): T - 59 * 60_000, ("bob", "BTCUSDT", "liqmap:short"): T - 60 * 60_000}
    assert [(p.recipient, p.cluster.side) for p in due(maps, recipients[:2], fired, NOW)] == [
        ("alice", "long"), ("bob", "short")]                            # bob's long within its 60 min cooldown
    text = proximity_notice(due(maps, recipients[:1], {}, NOW)[0])
    assert text["kind"] == "liqmap" and text["title"] == "BTC is 0.28% from a large long liquidation cluster"
    assert "With BTC at $100.00, an estimated $10.0M of longs would be liquidated at $99.7233 (0.28% below" \
        in text["text"] and "/liqmap BTC" in text["text"]


def steps(t0: int, n: int, oi0: float = 1000.0, oi_step: float = 1000.0) -> list[Step]:
    """Flat candles at 100 with balanced taker flow; OI rising by `oi_step` each step (new positions at 100)."""
    return [Step(t0 + i * 300_000, 100, 100, 100, 100, 1000, 100_000, 50_000, oi0 + i * oi_step) for i in range(n)]


@pytest.fixture
def cfg() -> Config:
    # most of the new notional at 100x: its levels (0.6 % either side of 100) are the top-quartile bins
    return Config.model_validate({"liqmap": {"symbols": ["BTCUSDT"], "leverage_mix": [
        {"leverage": 100, "share": 0.6, "mmr": 0.004}, {"leverage": 10, "share": 0.4, "mmr": 0.01}]}})


async def test_stored_steps_give_one_notice_per_side_then_the_cooldown_holds_across_a_restart(tmp_path, cfg):
    path = tmp_path / "l.db"
    store, clock = Store(path), FakeClock(time=T / 1000)
    store.add_liq_steps("BTCUSDT", steps(T - 300_000, 2))
    alice = [who("alice", liqmap_within_pct=1.0, cooldown_minutes=60)]
    assert ProximityAlerts(cfg, store, lambda: alice, clock).check() == 2              # longs 0.6 % below, shorts above
    assert ProximityAlerts(cfg, store, lambda: alice, clock).check() == 0              # the next refresh: cooldown
    out = io.StringIO()
    worker = DeliveryWorker(store, {"console": ConsoleSender(stream=out)}, clock=clock)
    assert await worker.deliver_due() == 2 and await worker.deliver_due() == 0
    text = out.getvalue()                      # 100x levels at 99.40 / 100.60: their bins' centres 99.33 / 100.52
    assert "BTC is 0.67% from a large long" in text and "BTC is 0.52% from a large short" in text
    assert store.recent_signals() == [] and store.recent_signals(recipient="alice") == []   # never a signal
    store.close()

    store = Store(path)                                                                # the restart
    store.add_liq_steps("BTCUSDT", steps(T + 300_000, 1, oi0=2000, oi_step=0))        # 5 minutes on
    assert ProximityAlerts(cfg, store, lambda: alice, clock).check() == 0
    store.add_liq_steps("BTCUSDT", steps(T + 3_600_000, 1, oi0=2000, oi_step=0))      # 60 minutes after the first
    assert ProximityAlerts(cfg, store, lambda: alice, clock).check() == 2
    assert len(store.outbox_rows()) == 4
    store.close()


def test_nobody_opted_in_reads_no_map(tmp_path, cfg):
    store = Store(tmp_path / "l.db")
    try:
        assert ProximityAlerts(cfg, store, lambda: [who("carol")]).check() == 0
        assert ProximityAlerts(cfg, store, lambda: [who("alice", liqmap_within_pct=1)]).check() == 0   # no steps yet
    finally:
        store.close()


async def test_a_refresh_against_the_simulator_runs_the_rule_and_wakes_delivery():
    """The feed's refresh job (real klines and OI from the loopback exchange) then the rule, as the app wires it."""
    from bot.demo_market.binance_server import BinanceSimServer
    from bot.demo_market.market import MarketSimulator
    from bot.exchange.binance import BinanceClient
    from bot.liqmap_feed import LiqMapFeed
    sim = MarketSimulator(n_symbols=30, seed=7)
    cfg = Config.model_validate({"liqmap": {"symbols": ["BTCUSDT"]}})
    store = Store(":memory:")
    watcher = [who("alice", liqmap_within_pct=10)]
    woken = []
    async with BinanceSimServer(sim) as server, BinanceClient(cfg.exchange, base_url=server.base_url) as client:
        feed = LiqMapFeed(cfg, client, store)
        feed.proximity = ProximityAlerts(cfg, store, lambda: watcher).check
        feed.on_queued = lambda: woken.append(1)
        await feed.scheduled_refresh()
        await feed.scheduled_refresh()                        # the next refresh: same map, cooldown, nothing new
    rows = store.outbox_rows()
    assert rows and woken == [1] and {r["notice"]["kind"] for r in rows} == {"liqmap"}
    assert {r["key"].split("-")[2] for r in rows} <= {"long", "short"} and len(rows) <= 2
    store.close()
