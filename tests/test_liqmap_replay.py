"""Replay: a recorded fixture (tests/data/liqmap_replay.json: 28 h of ETHUSDT candles, open interest and force
orders as Binance sends them, recorded from the simulator by tests/data/liqmap_replay_record.py) gives a known map,
the same through the store as straight from the wire."""
import json
from pathlib import Path

import pytest

from bot.config import Config
from bot.exchange.force_orders import parse_force_order
from bot.liqmap import Params, text
from bot.liqmap.view import build
from bot.liqmap_feed import join_steps, stored_view
from bot.store import Store

FIXTURE = Path(__file__).parent / "data" / "liqmap_replay.json"


@pytest.fixture(scope="module")
def recorded():
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    steps = join_steps(data["klines"], data["openInterestHist"], 300_000)
    prints = [parse_force_order(e) for e in data["forceOrders"]]
    return steps, prints


def check_known_map(v):
    m, r = v.map, v.reading
    assert (len(v.steps), len(v.prints), len(m.levels)) == (49, 88, 176)
    assert r.price == 3506.48 and r.bias == "Long flush risk"
    assert r.below.price == pytest.approx(3487.17, abs=0.01) and r.below.notional == pytest.approx(14.97e6, rel=1e-3)
    assert r.above.price == pytest.approx(3651.16, abs=0.01) and r.above.notional == pytest.approx(12.08e6, rel=1e-3)
    led = m.ledger
    assert led.added == pytest.approx(2382.32e6, rel=1e-5) and m.total() == pytest.approx(1172.63e6, rel=1e-5)
    assert led.added - led.consumed - led.shrunk - led.decayed == pytest.approx(m.total(), rel=1e-9)
    acc = m.accuracy
    assert acc.prints == 88 and acc.realised == pytest.approx(29.40e6, rel=1e-3)
    assert round(acc.share, 3) == 0.803 and round(acc.baseline, 3) == 0.517
    assert text(r).splitlines()[0] == ("With ETH at $3,506.48, the nearest large liquidation cluster below price sits "
                                       "at $3,487.17 (0.6% away, est. $15.0M of longs).")
    assert "80% of realised liquidation notional ($29.4M, 88 prints)" in v.footnote and "(by chance: 52%)" in v.footnote


def test_the_recorded_fixture_gives_the_known_map(recorded):
    steps, prints = recorded
    assert (len(steps), sum(p.side == "long" for p in prints)) == (337, 26)      # the fixture itself
    cfg = Config().liqmap
    check_known_map(build("ETHUSDT", "4h", steps, prints, Params.from_config(cfg), cfg.top_fraction))


def test_the_same_map_through_the_store(recorded, tmp_path):
    steps, prints = recorded
    store = Store(tmp_path / "bot.db")
    store.add_liq_steps("ETHUSDT", steps)
    store.add_liq_prints(prints)
    store.close()
    store = Store(tmp_path / "bot.db")                       # read back from the file
    try:
        check_known_map(stored_view(Config(), store, "ETHUSDT", "4h"))
    finally:
        store.close()
