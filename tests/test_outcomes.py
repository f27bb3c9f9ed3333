"""Closing signals: the tracker fetches the open signals' candles from the Binance-shaped simulator on loopback,
closes them (bot.evaluation), and the engine commits and seals each closing in the cycle in which it closes;
`verify` recomputes it and names a closing edited by hand."""
from __future__ import annotations

import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.config import Config, EvaluationConfig, ExchangeConfig, KLINE_INTERVALS
from bot.demo_market.binance_server import BinanceSimServer
from bot.demo_market.market import MarketSimulator
from bot.evaluation import HOUR_MS, Candle, evaluate
from bot.exchange.binance import BinanceClient
from bot.outcomes import OutcomeTracker, costs_of, plan_for, signal_input
from bot.records import OIPoint
from bot.sealing import Sealer, SigningKey, verify_store
from bot.store import Store

START = 1_790_000_000_000
FAST = ExchangeConfig(timeout_s=2.0, max_retries=1)
EVAL = EvaluationConfig(timeout_hours=2, walk_interval="5m")


@pytest.fixture
async def market():
    now = [1000.0]
    sim = MarketSimulator(n_symbols=20, seed=7, start_ms=START, speed=1.0, clock=lambda: now[0])
    server = BinanceSimServer(sim)
    url = await server.start()
    async with BinanceClient(FAST, base_url=url) as client:
        yield sim, now, client
    await server.stop()


def cycle(store: Store, ts: int, signals=(), closings=(), sealer: Sealer | None = None) -> None:
    store.commit_alert_cycle({"ts": ts, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                             list(signals), [], [], seal=sealer.prepare(ts, [], list(closings)) if sealer else None,
                             closings=list(closings))


def a_signal(sim: MarketSimulator, sid: str, symbol: str, bias: str, kind: str = "threshold") -> dict:
    mark = float(sim.premium_index(symbol, at_ms=START)["markPrice"]) if symbol in sim.symbols() else 1.0
    return dict(id=sid, ts=START, symbol=symbol, rule="cross:60", kind=kind, score=61, bias=bias, regime="x",
                receipt={"raw": {"mark_price": mark}})


def advance(sim, now, hours: float) -> int:
    now[0] += hours * 3600
    return sim.now_ms()


async def test_open_signals_close_on_the_exchanges_candles(market, tmp_path):
    sim, now, client = market
    store = Store(tmp_path / "t.db")
    sigs = [a_signal(sim, "SIGBTC01", "BTCUSDT", "LONG"), a_signal(sim, "SIGETH01", "ETHUSDT", "SHORT"),
            a_signal(sim, "SIGSOL01", "SOLUSDT", "NEUTRAL"), a_signal(sim, "SIGGONE1", "GONEUSDT", "LONG")]
    cycle(store, START, sigs)
    tracker = OutcomeTracker(EVAL, store, client)

    early = await tracker.closings(advance(sim, now, 0.25))
    assert all(c["outcome"]["status"] in ("TP1", "SL") for c in early)      # before the timeout: only a level hit
    assert "SIGGONE1" not in {c["signal"] for c in early}                     # no candles yet: still open

    later = advance(sim, now, 3)
    closed = {c["signal"]: c["outcome"] for c in await tracker.closings(later)}
    assert set(closed) | {c["signal"] for c in early} == {g["id"] for g in sigs}
    gone = closed["SIGGONE1"]
    assert gone["status"] == "TIMEOUT" and "no candles for GONEUSDT" in gone["reason"] and gone["follow"] is None
    assert closed["SIGSOL01"]["status"] == "TIMEOUT" and closed["SIGSOL01"]["follow"] is None
    assert closed["SIGSOL01"]["move"]["max_up_bps"] is not None

    # the same evaluation on candles read straight from the simulator gives the same closing
    step = KLINE_INTERVALS["5m"]
    hourly = [Candle.from_binance(r, HOUR_MS) for r in sim.klines("BTCUSDT", "1h", limit=26, end_time=START)]
    walk = [Candle.from_binance(r, step) for r in sim.klines("BTCUSDT", "5m", limit=100, start_time=START)]
    btc = store.signal("SIGBTC01")
    expected = evaluate(signal_input(btc), plan_for(EVAL, "threshold"), costs_of(EVAL), hourly, walk, step, [], later)
    assert closed.get("SIGBTC01", expected) == expected
    assert expected["follow"]["net_bps"] is not None and expected["fade"]["net_bps"] is not None


async def test_closings_are_sealed_in_their_cycle_and_a_hand_edit_is_named(market, tmp_path):
    sim, now, client = market
    db = tmp_path / "s.db"
    store = Store(db)
    sealer = Sealer(SigningKey(Ed25519PrivateKey.generate(), "test"))
    cycle(store, START, [a_signal(sim, "SIGBTC01", "BTCUSDT", "LONG")], sealer=sealer)
    later = advance(sim, now, 3)
    closings = await OutcomeTracker(EVAL, store, client).closings(later)
    assert [c["signal"] for c in closings] == ["SIGBTC01"]
    cycle(store, later, closings=closings, sealer=sealer)
    assert store.open_signals() == [] and store.closed_in("SIGBTC01") == later
    assert await OutcomeTracker(EVAL, store, client).closings(later) == []      # never twice
    v = verify_store(store, sealer.public_key, "test")
    assert v.ok and v.closings == 1 and v.signals == 1
    store.close()

    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE signals SET outcome = replace(outcome, '\"status\": \"', '\"status\": \"X') "
                    "WHERE id='SIGBTC01'")
    store = Store(db)
    v = verify_store(store, sealer.public_key, "test")
    assert not v.ok and v.problem.record == "closing SIGBTC01" and v.problem.cycle_ts == later


def test_per_kind_overrides():
    cfg = EvaluationConfig(tp_atr=2, per_kind={"regime": {"timeout_hours": 8, "sl_atr": 0.5}})
    assert plan_for(cfg, "regime") == type(plan_for(cfg, "regime"))(2, 0.5, 8 * HOUR_MS, 14)
    assert plan_for(cfg, "threshold").timeout_ms == 24 * HOUR_MS
    with pytest.raises(ValueError, match="unknown rule kind"):
        EvaluationConfig(per_kind={"cross": {}})


def test_hourly_pruning_counts_back_from_the_exchange_time_not_the_local_clock(tmp_path):
    """A server clock days ahead of the exchange (or an exchange days behind) must not wipe the history
    the 1h/4h/24h changes come from: retention is measured from the last cycle's exchange time."""
    from types import SimpleNamespace

    from bot.app import hourly_housekeeping

    T0 = 1_800_000_000_000
    store = Store(tmp_path / "p.db")
    old = T0 - 3 * 24 * HOUR_MS                  # the exchange's clock sits far behind the local one
    store.add_oi_points([OIPoint("XUSDT", old - h * HOUR_MS, 1000, 100) for h in range(0, 60)])
    store.commit_alert_cycle({"ts": old, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {}, [], [], [])
    cfg = Config()
    hourly_housekeeping(SimpleNamespace(store=store, cfg=cfg))
    kept = store.oi_series("XUSDT", 0)
    assert len(kept) == cfg.history.retention_hours + 1          # hours 0..retention kept, the rest pruned
    assert min(p.ts for p in kept) == old - cfg.history.retention_hours * HOUR_MS


async def test_a_failing_symbol_stays_open_and_a_delisted_one_times_out(tmp_path):
    """Candle requests that fail (502) leave that symbol's signals open for the next cycle, the others close; a
    symbol the exchange stopped serving (-1121) closes as TIMEOUT with the reason."""
    from bot.demo_market.binance_server import Faults
    now = [1000.0]
    sim = MarketSimulator(n_symbols=20, seed=7, start_ms=START, speed=1.0, clock=lambda: now[0])
    server = BinanceSimServer(sim, Faults())
    url = await server.start()
    try:
        async with BinanceClient(ExchangeConfig(timeout_s=2.0, max_retries=0), base_url=url) as client:
            store = Store(tmp_path / "f.db")
            cycle(store, START, [a_signal(sim, "SIGBTC01", "BTCUSDT", "LONG"),
                                 a_signal(sim, "SIGETH01", "ETHUSDT", "LONG"),
                                 a_signal(sim, "SIGSOL01", "SOLUSDT", "SHORT")])
            server.faults.add("5xx", "/fapi/v1/klines", symbol="ETHUSDT", times=None)
            server.faults.add("missing_symbol", "/fapi/v1/klines", symbol="SOLUSDT", times=None)
            closed = {c["signal"]: c["outcome"] for c in
                      await OutcomeTracker(EVAL, store, client).closings(advance(sim, now, 3))}
            assert "SIGETH01" not in closed and "SIGBTC01" in closed
            assert closed["SIGSOL01"]["status"] == "TIMEOUT" and "no candles for SOLUSDT" in closed["SIGSOL01"]["reason"]
    finally:
        await server.stop()


async def test_the_engine_closes_signals_in_its_cycle_and_seals_them(market, tmp_path):
    """The real Engine with a tracker: signals fired in one cycle close in a later one, in the same commit and
    seal; verify recomputes the closings."""
    from bot.cycle import CycleOutcome
    from bot.engine import Engine, Recipient, Route
    from bot.market import CycleData
    from bot.rules import FilterSubscriber
    from bot.score import ScoreInputs, score_all

    sim, now, client = market
    calm = [ScoreInputs(s, 0.0001, 8, 0.001, 0.002, 0.005, 0.0001, 0.001, 0.002) for s in ("BTCUSDT", "ETHUSDT")]
    hot = [ScoreInputs("BTCUSDT", 0.0012, 8, 0.03, -0.03375, 0.15, 0.004, 0.015, 0.05),          # LONG
           ScoreInputs("ETHUSDT", -0.0015, 8, -0.04, -0.08, -0.075, -0.005, -0.02, -0.08)]     # SHORT
    cfg = Config(evaluation=EVAL)

    class Source:
        queue: list = []

        async def next_cycle(self) -> CycleOutcome:
            inputs, ts = self.queue.pop(0), sim.now_ms()
            raw = {i.symbol: {"time": ts, "mark_price": float(sim.premium_index(i.symbol)["markPrice"])} for i in inputs}
            return CycleOutcome(ts, score_all(inputs, cfg.score), CycleData(ts, inputs, raw), 0.1, 0, 0, 0)

    store = Store(tmp_path / "e.db")
    sealer = Sealer(SigningKey(Ed25519PrivateKey.generate(), "test"))
    console = Recipient("console", FilterSubscriber.from_filter(cfg.console), [Route("console", "console")])
    src = Source()
    engine = Engine(cfg, store, client, lambda: [console], source=src, sealer=sealer,
                    tracker=OutcomeTracker(cfg.evaluation, store, client))
    for inputs, hours in ((calm, 0), (hot, 0.1), (hot, 0.1), (hot, 3)):    # a regime confirms on its 2nd cycle
        advance(sim, now, hours)
        src.queue.append(inputs)
        await engine.run_once()
    last = store.last_cycle()["ts"]
    fired = [g for g in store.signals_since(0) if g["ts"] < last]
    assert {g["kind"] for g in fired} >= {"threshold", "regime"}
    assert {g["id"] for g in store.cycle_closings(last)} == {g["id"] for g in fired}     # closed in the last cycle
    assert all(g["outcome"]["status"] in ("TP1", "SL", "TIMEOUT") for g in fired)
    v = verify_store(store, sealer.public_key, "test")
    assert v.ok and v.closings == len(fired) and v.cycles == 4
