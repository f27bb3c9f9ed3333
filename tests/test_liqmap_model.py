"""LiqMap model properties (pure): liquidation prices, consumption, conservation, the read."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import LiqMapConfig
from bot.liqmap import LiqMap, Params, Print, Step, clusters_within, liquidation_price, read, run, text

PARAMS = Params.from_config(LiqMapConfig())
leverages = st.floats(min_value=1.5, max_value=125)
mmrs = st.floats(min_value=0, max_value=0.05)
prices = st.floats(min_value=1e-4, max_value=1e6)


def step(ts, o, h, l, c, oi, buy=0.5, qv=1e6):
    vwap = (h + l + c) / 3
    return Step(ts, o, h, l, c, qv / vwap, qv, qv * buy, oi)


@given(prices, leverages, mmrs)
def test_long_levels_below_entry_and_short_levels_above(p, lev, mmr):
    mmr = min(mmr, 0.99 / lev)           # the config refuses mmr >= 1/L (liquidated at entry)
    assert liquidation_price(p, lev, mmr, "long") < p < liquidation_price(p, lev, mmr, "short")


def test_100x_at_0_4_percent_maintenance_is_0_60_percent_below_entry_not_1_percent():
    assert liquidation_price(100.0, 100, 0.004, "long") == pytest.approx(99.3976, abs=1e-4)
    assert (1 - liquidation_price(100.0, 100, 0.004, "long") / 100) * 100 == pytest.approx(0.60, abs=0.005)
    assert liquidation_price(100.0, 100, 0.004, "short") == pytest.approx(100.5976, abs=1e-4)


def test_config_shares_must_add_up_to_one_and_mmr_stay_below_one_over_leverage():
    with pytest.raises(ValueError, match="add up to 1"):
        LiqMapConfig(leverage_mix=[{"leverage": 10, "share": 0.5, "mmr": 0.01}])
    with pytest.raises(ValueError, match="below 1/leverage"):
        LiqMapConfig(leverage_mix=[{"leverage": 100, "share": 1, "mmr": 0.01}])
    with pytest.raises(ValueError, match="exchange symbols such as BTCUSDT, not BTC"):
        LiqMapConfig(symbols=["btc"])
    assert LiqMapConfig(symbols=[" ethusdt", "ETHUSDT"]).symbols == ["ETHUSDT"]


@given(st.floats(min_value=1, max_value=1e5), st.floats(min_value=0, max_value=1))
def test_new_positions_land_below_for_longs_above_for_shorts(p, buy):
    m = LiqMap(PARAMS)
    m.step(step(0, p, p, p, p, 1000.0))
    m.step(step(300_000, p, p, p, p, 1100.0, buy=buy))
    for (side, b), v in m.levels.items():
        assert v > 0
        assert (m.bin_price(b) < p) if side == "long" else (m.bin_price(b) > p)
    longs = sum(v for (s, _), v in m.levels.items() if s == "long")
    assert longs == pytest.approx(100 * p * buy, rel=1e-9, abs=1e-9)


def test_a_level_is_consumed_once_price_crosses_it():
    m = LiqMap(PARAMS)
    m.step(step(0, 100, 100, 100, 100, 1000.0))
    m.step(step(300_000, 100, 100, 100, 100, 2000.0, buy=1.0))     # only longs: 100k notional
    hundred_x = m.bin_of(liquidation_price(100, 100, 0.004, "long"))
    assert ("long", hundred_x) in m.levels
    m.step(step(600_000, 100, 100, 99.9, 99.95, 2000.0))            # not yet through 99.40
    assert ("long", hundred_x) in m.levels
    m.step(step(900_000, 99.9, 99.9, 99.2, 99.5, 2000.0))           # trades through it
    assert ("long", hundred_x) not in m.levels
    assert m.ledger.consumed > 0
    m.step(step(1_200_000, 99.5, 101, 99.5, 100.5, 2000.0))        # back up: it does not come back
    assert ("long", hundred_x) not in m.levels


bars = st.lists(st.tuples(st.floats(min_value=-0.03, max_value=0.03), st.floats(min_value=0, max_value=0.02),
                          st.floats(min_value=-0.05, max_value=0.05), st.floats(min_value=0, max_value=1),
                          st.integers(min_value=1, max_value=12)), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(bars)
def test_conservation_added_minus_removed_minus_decayed_is_on_the_map(path):
    m = LiqMap(PARAMS)
    price, oi, ts = 100.0, 1000.0, 0
    for ret, wick, doi, buy, gap in path:
        close = price * (1 + ret)
        hi, lo = max(price, close) * (1 + wick), min(price, close) * (1 - wick)
        oi = max(1.0, oi * (1 + doi))
        m.step(step(ts, price, hi, lo, close, oi, buy))
        price, ts = close, ts + gap * 300_000
        led = m.ledger
        assert led.added - led.consumed - led.shrunk - led.decayed == pytest.approx(m.total(), rel=1e-9, abs=1e-6)
        assert all(v >= 0 for v in m.levels.values())


def test_oi_falling_shrinks_every_level_by_the_share_closed():
    m = LiqMap(PARAMS)
    m.step(step(0, 100, 100, 100, 100, 1000.0))
    m.step(step(60_000, 100, 100, 100, 100, 2000.0))
    before = dict(m.levels)
    m.step(step(120_000, 100, 100, 100, 100, 1500.0))                # a quarter of OI closed
    keep = 0.75 * 0.5 ** (60_000 / PARAMS.half_life_ms)
    for k, v in before.items():
        assert m.levels[k] == pytest.approx(v * keep)


def test_half_life_halves_the_map():
    m = LiqMap(PARAMS)
    m.step(step(0, 100, 100, 100, 100, 1000.0))
    m.step(step(1, 100, 100, 100, 100, 2000.0))
    total = m.total()
    m.step(step(1 + PARAMS.half_life_ms, 100, 100, 100, 100, None))
    assert m.total() == pytest.approx(total / 2)


def test_bins_scale_with_price():
    m = LiqMap(PARAMS)
    for p in (0.02, 1.0, 60_000.0):
        b = m.bin_of(p)
        width = m.bin_price(b + 1) / m.bin_price(b) - 1
        assert width == pytest.approx(PARAMS.bin_fraction)
        assert m.bin_price(b) / p == pytest.approx(1, abs=PARAMS.bin_fraction)


def test_accuracy_counts_prints_inside_the_top_bands_of_their_side():
    steps = [step(0, 100, 100, 100, 100, 1000.0), step(300_000, 100, 100, 100, 100, 2000.0, buy=1.0),
             step(600_000, 100, 100, 98.0, 98.5, 2000.0)]
    lev10 = liquidation_price(100, 10, 0.01, "long")                 # 10x: the largest long slice (30 %)
    prints = [Print(650_000, "X", "long", lev10, 100.0),              # inside: the biggest long band
              Print(660_000, "X", "long", 80.0, 100.0),               # far from any band
              Print(670_000, "X", "short", lev10, 100.0)]             # no short estimate at all
    seen = []
    m = run(steps, PARAMS, prints, on_step=lambda s, _m: seen.append(s.ts))
    assert m.accuracy.prints == 3
    assert m.accuracy.inside == pytest.approx(lev10 * 100)
    assert seen == [0, 300_000, 600_000]


def test_read_names_the_nearest_large_cluster_each_side_and_the_bias():
    m = LiqMap(PARAMS)
    m.step(step(0, 100, 100, 100, 100, 1000.0))
    m.step(step(300_000, 100, 100, 100, 100, 3000.0, buy=0.8))      # mostly longs: dense side below
    r = read(m, "ETHUSDT", 100.0)
    assert r.below is not None and r.below.price < 100 and r.above is not None and r.above.price > 100
    assert r.bias == "Long flush risk"
    t = text(r)
    assert "With ETH at $100.00, the nearest large liquidation cluster below price sits at $" in t
    assert math.isclose(r.below.distance, (100 - r.below.price) / 100)


def test_clusters_within_x_percent_of_price_are_the_top_quartile_ones_only():
    m = LiqMap(PARAMS)
    m.step(step(0, 100, 100, 100, 100, 1000.0))
    m.step(step(300_000, 100, 100, 100, 100, 3000.0, buy=0.8))
    # per side, 5 levels: the top quarter is the two largest slices, 10x (30 %) and 25x (25 %), not 100x (0.6 %)
    assert clusters_within(m, 100.0, 0.01) == []
    near = clusters_within(m, 100.0, 0.05)                      # the 25x levels, about 3.5 % either side
    assert [c.side for c in near] == ["short", "long"] and all(0.034 < c.distance < 0.037 for c in near)
    far = clusters_within(m, 100.0, 0.10)                       # and the 10x ones: 8.9 % above, 9.0 % below
    assert [c.side for c in far] == ["short", "long", "short", "long"] and far[-1].distance < 0.091
    tops = m.top_bins("long") | m.top_bins("short")
    assert all(m.bin_of(c.price) in tops for c in clusters_within(m, 100.0, 0.5))
