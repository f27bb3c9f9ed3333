"""Tests for the seeded market simulator (bot/demo_market/market.py)."""

from __future__ import annotations

import re
import statistics
import time

import pytest

from bot.demo_market.market import DAY_MS, HOUR_MS, MINUTE_MS, Episode, MarketSimulator

START = 1_794_999_960_000  # a fixed minute, 2026-11-18 UTC
N = 300


def fixed_clock():
    return 1000.0


@pytest.fixture(scope="module")
def sim() -> MarketSimulator:
    return MarketSimulator(n_symbols=N, seed=7, start_ms=START, clock=fixed_clock)


def _is_decimal_str(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r"-?\d+(\.\d+)?", v) is not None


# ---------------------------------------------------------------------------------------------
# clock / universe


def test_clock_runs_at_speed():
    now = [500.0]
    s = MarketSimulator(n_symbols=20, speed=60, start_ms=START, clock=lambda: now[0])
    assert s.now_ms() == START
    now[0] += 2.5
    assert s.now_ms() == START + 150_000


def test_a_held_market_stands_still_until_released():
    now = [500.0]
    s = MarketSimulator(n_symbols=20, speed=60, start_ms=START, clock=lambda: now[0], held=True)
    now[0] += 30.0                                   # the bot's cold start, however long it takes
    assert s.now_ms() == START
    s.release()
    now[0] += 2.5
    assert s.now_ms() == START + 150_000


def test_default_start_is_the_current_five_minute_boundary():
    s = MarketSimulator(n_symbols=10)
    assert s.start_ms % (5 * MINUTE_MS) == 0          # an openInterestHist boundary
    assert 0 <= time.time() * 1000 - s.start_ms < 5 * MINUTE_MS + 1000


@pytest.mark.parametrize("shift_h", [1, 7, 13, 23, 24 * 3 + 5])
def test_the_path_depends_on_time_since_start_not_on_the_wall_clock(shift_h):
    """Same seed, different start: every payload the bot reads is the same at the same time since the
    start, so the demo's first minutes do not depend on the hour or day it is started."""
    other_start = START + shift_h * HOUR_MS
    a = MarketSimulator(n_symbols=60, seed=7, start_ms=START, clock=fixed_clock)
    b = MarketSimulator(n_symbols=60, seed=7, start_ms=other_start, clock=fixed_clock)
    perps = set(a.symbols())

    def same(pa, pb):            # the perpetuals; a quarterly's basis depends on its delivery date
        if pa["symbol"] not in perps:
            return True
        strip = {"time", "closeTime", "openTime", "nextFundingTime", "timestamp", "firstId", "lastId", "count"}
        return {k: v for k, v in pa.items() if k not in strip} == {k: v for k, v in pb.items() if k not in strip}

    for dt in (-HOUR_MS, 0, 7 * MINUTE_MS, 45 * MINUTE_MS, 3 * HOUR_MS):
        for pa, pb in zip(a.premium_index(at_ms=START + dt), b.premium_index(at_ms=other_start + dt)):
            assert same(pa, pb), (dt, pa, pb)
        for pa, pb in zip(a.ticker_24hr(at_ms=START + dt), b.ticker_24hr(at_ms=other_start + dt)):
            assert same(pa, pb), (dt, pa, pb)
    ha = a.open_interest_hist("SOLUSDT", "5m", 300, at_ms=START)
    hb = b.open_interest_hist("SOLUSDT", "5m", 300, at_ms=other_start)
    assert [r["sumOpenInterest"] for r in ha] == [r["sumOpenInterest"] for r in hb]
    shifted = [(e.symbol, e.kind, e.start_ms - START) for e in a.episodes(START - DAY_MS, START + DAY_MS)]
    assert shifted == [(e.symbol, e.kind, e.start_ms - other_start)
                       for e in b.episodes(other_start - DAY_MS, other_start + DAY_MS)]


def test_symbols(sim):
    syms = sim.symbols()
    assert len(syms) == N == len(set(syms))
    assert syms[:4] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "1000PEPEUSDT"]
    assert all(re.fullmatch(r"[0-9A-Z]+USDT", s) for s in syms)
    # names don't depend on the seed or on n (a smaller universe is a prefix of a bigger one)
    assert MarketSimulator(n_symbols=N + 100, seed=99, start_ms=START).symbols()[:N] == syms
    for extra in ("BTCUSDT_261225", "OLDUSDT", "BTCUSDC"):
        assert extra not in syms and not sim.unknown(extra)
    assert sim.unknown("NOPEUSDT") and not sim.unknown("BTCUSDT")


def test_exchange_info_shape_and_eligibility(sim):
    info = sim.exchange_info()
    assert info["timezone"] == "UTC" and isinstance(info["serverTime"], int)
    rl = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in info["rateLimits"]}
    assert rl[("REQUEST_WEIGHT", "MINUTE", 1)] == 2400
    by = {s["symbol"]: s for s in info["symbols"]}
    for s in info["symbols"]:
        for k in ("symbol", "pair", "contractType", "status", "baseAsset", "quoteAsset", "marginAsset",
                  "pricePrecision", "quantityPrecision", "deliveryDate", "onboardDate", "filters", "orderTypes"):
            assert k in s
        assert isinstance(s["deliveryDate"], int) and isinstance(s["pricePrecision"], int)
    assert by["BTCUSDT_261225"]["contractType"] == "CURRENT_QUARTER" and by["BTCUSDT_261225"]["pair"] == "BTCUSDT"
    assert by["OLDUSDT"]["status"] == "SETTLING" and by["OLDUSDT"]["contractType"] == "PERPETUAL"
    assert by["BTCUSDC"]["quoteAsset"] == "USDC" and by["BTCUSDC"]["contractType"] == "PERPETUAL"
    assert by["1000PEPEUSDT"]["baseAsset"] == "1000PEPE"
    eligible = [s["symbol"] for s in info["symbols"]
                if s["contractType"] == "PERPETUAL" and s["status"] == "TRADING" and s["quoteAsset"] == "USDT"]
    assert eligible == sim.symbols()


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_payloads(sim):
    other = MarketSimulator(n_symbols=N, seed=7, start_ms=START, clock=lambda: 123456.0)
    t = START + 17 * MINUTE_MS + 123
    assert other.premium_index(at_ms=t) == sim.premium_index(at_ms=t)
    assert other.ticker_24hr(at_ms=t) == sim.ticker_24hr(at_ms=t)
    assert other.open_interest("SOLUSDT", at_ms=t) == sim.open_interest("SOLUSDT", at_ms=t)
    assert other.open_interest_hist("ETHUSDT", "15m", 100, at_ms=t) == \
        sim.open_interest_hist("ETHUSDT", "15m", 100, at_ms=t)
    assert other.funding_info() == sim.funding_info()
    assert other.episodes() == sim.episodes()
    diff = MarketSimulator(n_symbols=N, seed=8, start_ms=START, clock=fixed_clock)
    assert diff.premium_index(at_ms=t) != sim.premium_index(at_ms=t)


def test_state_is_a_function_of_time(sim):
    """Evaluation order (and the knot caches) must not change the numbers."""
    sym = sim.symbols()[42]
    times = [START - 20 * DAY_MS, START, START + 7 * HOUR_MS + 1, START - 3 * HOUR_MS, START]
    a = [sim.premium_index(sym, at_ms=t) for t in times]
    fresh = MarketSimulator(n_symbols=N, seed=7, start_ms=START, clock=fixed_clock)
    b = [fresh.premium_index(sym, at_ms=t) for t in reversed(times)][::-1]
    assert a == b
    assert a[1] == a[4]


# ---------------------------------------------------------------------------------------------
# payload shapes


def test_premium_index_shape(sim):
    rows = sim.premium_index()
    assert isinstance(rows, list) and len(rows) == N + 3
    single = sim.premium_index("BTCUSDT")
    assert isinstance(single, dict) and single["symbol"] == "BTCUSDT"
    ivals = {r["symbol"]: r["fundingIntervalHours"] for r in sim.funding_info()}
    for r in rows:
        assert set(r) == {"symbol", "markPrice", "indexPrice", "estimatedSettlePrice", "lastFundingRate",
                          "interestRate", "nextFundingTime", "time"}
        assert isinstance(r["time"], int) and isinstance(r["nextFundingTime"], int)
        for k in ("markPrice", "indexPrice", "estimatedSettlePrice"):
            assert _is_decimal_str(r[k]) and float(r[k]) > 0
        if r["symbol"] == "BTCUSDT_261225":
            assert r["lastFundingRate"] == "" and r["interestRate"] == "" and r["nextFundingTime"] == 0
            continue
        h = ivals.get(r["symbol"], 8)
        assert r["interestRate"] == f"{0.0001 * h / 8:.8f}"
        assert _is_decimal_str(r["lastFundingRate"])
        assert r["time"] < r["nextFundingTime"] <= r["time"] + h * HOUR_MS
        assert r["nextFundingTime"] % (h * HOUR_MS) == 0
    assert {r["interestRate"] for r in rows} >= {"0.00010000", "0.00005000"}


def test_ticker_shape_and_volumes(sim):
    rows = sim.ticker_24hr()
    assert len(rows) == N + 3
    int_keys = {"openTime", "closeTime", "firstId", "lastId", "count"}
    str_keys = {"priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "lastQty", "openPrice",
                "highPrice", "lowPrice", "volume", "quoteVolume"}
    for r in rows:
        assert set(r) == int_keys | str_keys | {"symbol"}
        assert all(isinstance(r[k], int) for k in int_keys)
        assert all(_is_decimal_str(r[k]) for k in str_keys), r
        last, open_ = float(r["lastPrice"]), float(r["openPrice"])
        assert float(r["lowPrice"]) <= min(last, open_) <= max(last, open_) <= float(r["highPrice"])
        assert float(r["priceChangePercent"]) == pytest.approx((last - open_) / open_ * 100, abs=2e-3)
        assert r["lastId"] - r["firstId"] + 1 == r["count"] > 0
        assert r["closeTime"] - r["openTime"] <= DAY_MS + MINUTE_MS
    qv = {r["symbol"]: float(r["quoteVolume"]) for r in rows if r["symbol"] in set(sim.symbols())}
    assert qv["BTCUSDT"] > 1e9 and qv["ETHUSDT"] > 1e9
    small = [v for v in qv.values() if v < 1e6]
    assert 1 <= len(small) <= 0.08 * N
    alts = sorted(qv[s] for s in sim.symbols()[12:])
    assert 1e6 < statistics.median(alts) < 5e7
    single = sim.ticker_24hr("ETHUSDT")
    assert isinstance(single, dict) and single["symbol"] == "ETHUSDT"


def test_open_interest_and_hist_consistent(sim):
    oi = sim.open_interest("BTCUSDT", at_ms=START)
    assert set(oi) == {"symbol", "openInterest", "time"}
    assert _is_decimal_str(oi["openInterest"]) and oi["time"] == START
    hist = sim.open_interest_hist("BTCUSDT", "5m", 288, at_ms=START)
    assert len(hist) == 288
    ts = [h["timestamp"] for h in hist]
    assert all(isinstance(t, int) for t in ts)
    assert ts == sorted(ts) and all(b - a == 5 * MINUTE_MS for a, b in zip(ts, ts[1:]))
    assert ts[-1] <= START < ts[-1] + 5 * MINUTE_MS
    for h in hist:
        assert set(h) == {"symbol", "sumOpenInterest", "sumOpenInterestValue", "CMCCirculatingSupply", "timestamp"}
        assert all(_is_decimal_str(h[k]) for k in ("sumOpenInterest", "sumOpenInterestValue", "CMCCirculatingSupply"))
    # every point equals openInterest at that instant; the latest is close to "now"
    for h in hist[::50] + hist[-1:]:
        at = sim.open_interest("BTCUSDT", at_ms=h["timestamp"])
        assert float(h["sumOpenInterest"]) == pytest.approx(float(at["openInterest"]), abs=1e-6)
    assert float(hist[-1]["sumOpenInterest"]) == pytest.approx(float(oi["openInterest"]), rel=0.02)
    mark = float(sim.premium_index("BTCUSDT", at_ms=START)["markPrice"])
    assert float(hist[-1]["sumOpenInterestValue"]) == pytest.approx(float(oi["openInterest"]) * mark, rel=0.03)


def test_open_interest_hist_params(sim):
    sym = "ETHUSDT"
    assert len(sim.open_interest_hist(sym, at_ms=START)) == 30          # default limit
    one_h = sim.open_interest_hist(sym, "1h", 500, at_ms=START)
    assert len(one_h) == 500 and all(h["timestamp"] % HOUR_MS == 0 for h in one_h)
    days = sim.open_interest_hist(sym, "1d", 500, at_ms=START)
    assert len(days) in (30, 31) and days[0]["timestamp"] >= START - 30 * DAY_MS   # only the last 30 days
    ranged = sim.open_interest_hist(sym, "5m", 10, start_time=START - 5 * HOUR_MS, at_ms=START)
    first = -(-(START - 5 * HOUR_MS) // (5 * MINUTE_MS)) * 5 * MINUTE_MS   # first boundary >= startTime
    assert ranged[0]["timestamp"] == first
    assert len(ranged) == 10
    ended = sim.open_interest_hist(sym, "30m", 4, end_time=START - DAY_MS, at_ms=START)
    assert len(ended) == 4 and ended[-1]["timestamp"] <= START - DAY_MS
    old = sim.open_interest_hist(sym, "5m", 5, start_time=START - 40 * DAY_MS, at_ms=START)
    assert old[0]["timestamp"] >= START - 30 * DAY_MS
    with pytest.raises(ValueError):
        sim.open_interest_hist(sym, "7m", at_ms=START)
    with pytest.raises(ValueError):
        sim.open_interest_hist(sym, "5m", 501, at_ms=START)
    with pytest.raises(ValueError):
        sim.open_interest_hist(sym, "5m", 0, at_ms=START)


def test_funding_info(sim):
    rows = sim.funding_info()
    assert rows and all(r["fundingIntervalHours"] != 8 for r in rows)
    for r in rows:
        assert isinstance(r["fundingIntervalHours"], int) and r["disclaimer"] is False
        assert _is_decimal_str(r["adjustedFundingRateCap"]) and _is_decimal_str(r["adjustedFundingRateFloor"])
    hours = [r["fundingIntervalHours"] for r in rows if r["symbol"] in set(sim.symbols())]
    assert hours.count(1) == 2
    assert 0.15 * N < hours.count(4) < 0.35 * N


# ---------------------------------------------------------------------------------------------
# resting state


def _quiet(sim: MarketSimulator, t: int) -> list[str]:
    """Symbols with no episode active in the 8 hours up to t."""
    busy = {e.symbol for e in sim.episodes(t - 8 * HOUR_MS, t + 1)}
    return [s for s in sim.symbols() if s not in busy]


def test_resting_funding_and_basis(sim):
    t = START + 3 * HOUR_MS
    quiet = _quiet(sim, t)
    assert len(quiet) > 0.7 * N
    rows = {r["symbol"]: r for r in sim.premium_index(at_ms=t)}
    exact = 0
    for s in quiet:
        r = rows[s]
        base = float(r["interestRate"])
        rate = float(r["lastFundingRate"])
        assert abs(rate - base) <= 0.00006 * base / 0.0001 + 1e-12, (s, r)
        exact += r["lastFundingRate"] == r["interestRate"]
        basis = float(r["markPrice"]) / float(r["indexPrice"]) - 1
        assert abs(basis) <= 0.0003 + 1e-7 + 1e-8 / float(r["indexPrice"])   # plus 8-decimal rounding
    assert exact > 0.5 * len(quiet)


def test_resting_oi_drift_is_small(sim):
    t = START + 12 * HOUR_MS
    busy = {e.symbol for e in sim.episodes(t - 4 * DAY_MS, t + 1)}
    changes = []
    for s in sim.symbols():
        if s in busy:
            continue
        now, day = sim.state(s, t).open_interest, sim.state(s, t - DAY_MS).open_interest
        changes.append(abs(now / day - 1))
    assert len(changes) > 50
    assert statistics.median(changes) < 0.05
    assert max(changes) < 0.2


# ---------------------------------------------------------------------------------------------
# episodes


def test_episodes_schedule(sim):
    eps = sim.episodes()
    kinds = {e.kind for e in eps}
    assert kinds == {"long_crowding", "short_ramp", "squeeze", "unwind"}
    assert {e.side for e in eps if e.kind == "squeeze"} == {"long", "short"}
    by_sym: dict[str, list[Episode]] = {}
    for e in eps:
        assert HOUR_MS <= e.duration_ms <= 8 * HOUR_MS
        assert e.symbol in set(sim.symbols())
        by_sym.setdefault(e.symbol, []).append(e)
    for group in by_sym.values():   # no overlapping episodes on one symbol; unwinds follow their parent
        group.sort(key=lambda e: e.start_ms)
        for a, b in zip(group, group[1:]):
            assert a.end_ms <= b.start_ms
            if b.kind == "unwind":
                assert a.chained and a.end_ms == b.start_ms and a.side == b.side
                assert a.kind in ("long_crowding", "short_ramp")
                assert b.funding_from == a.funding_8h and b.basis_from == a.basis
    assert eps[0].start_ms < START - 25 * DAY_MS           # history exists for backfill


def _pick(sim, kind, side=None, n=25, chained=None):
    out = [e for e in sim.episodes(START - 20 * DAY_MS, START - DAY_MS)
           if e.kind == kind and (side is None or e.side == side) and not e.kickoff
           and (chained is None or e.chained == chained)]
    assert len(out) >= 5, (kind, side)
    return out[:n]


@pytest.mark.parametrize("kind,side,oi_sign,px_sign,f_lo,f_hi,b_lo,b_hi", [
    ("long_crowding", "long", 1, 1, 0.0005, 0.003, 0.002, 0.01),
    ("short_ramp", "short", 1, -1, -0.005, -0.0003, -0.01, -0.002),
    ("squeeze", "short", 1, 1, -0.005, -0.001, -0.008, -0.002),
    ("squeeze", "long", 1, -1, 0.001, 0.004, 0.002, 0.008),
])
def test_episode_ramps(sim, kind, side, oi_sign, px_sign, f_lo, f_hi, b_lo, b_hi):
    price_ok = 0
    eps = _pick(sim, kind, side, chained=False)   # chained ones hand over to an unwind (tested below)
    for e in eps:
        before = sim.state(e.symbol, e.start_ms - 1)
        mid = sim.state(e.symbol, e.start_ms + e.duration_ms // 2)
        late = sim.state(e.symbol, e.start_ms + int(e.duration_ms * 0.72))
        after = sim.state(e.symbol, e.end_ms + 30 * MINUTE_MS)
        assert before.episode is None and mid.episode == e and after.episode is None
        assert e.intensity(e.start_ms + e.duration_ms // 20) < e.intensity(e.start_ms + e.duration_ms // 2)
        # funding (8h-equivalent) and basis at the plateau, with the resting noise allowed around them
        assert f_lo - 6e-5 <= mid.funding_8h <= f_hi + 6e-5
        assert b_lo - 3e-4 <= mid.basis <= b_hi + 3e-4
        base = 0.0001 * mid.interval_h / 8
        assert abs(after.funding_rate - base) <= 6e-5 * mid.interval_h / 8 + 1e-12  # reverted
        oi_move = late.open_interest / before.open_interest - 1
        assert oi_sign * oi_move > 0.6 * e.oi_change - 0.04
        price_ok += px_sign * (late.index_price / before.index_price - 1) > 0
    assert price_ok >= 0.7 * len(eps)


def test_unwind_ramps(sim):
    eps = _pick(sim, "unwind")
    price_ok = 0
    for e in eps:
        start = sim.state(e.symbol, e.start_ms + 1)
        late = sim.state(e.symbol, e.start_ms + int(e.duration_ms * 0.5))
        after = sim.state(e.symbol, e.end_ms + MINUTE_MS)
        assert e.oi_change < -0.04
        assert late.open_interest / start.open_interest - 1 < 0.6 * e.oi_change + 0.03
        # funding starts at the crowded level and reverts to rest
        crowded = start.funding_8h - 0.0001
        assert (crowded > 0.0003) if e.side == "long" else (crowded < -0.0003)
        assert abs(after.funding_8h - 0.0001) < 6e-5
        move = late.index_price / start.index_price - 1
        price_ok += (move < 0) if e.side == "long" else (move > 0)
    assert price_ok >= 0.7 * len(eps)


def test_share_of_symbols_in_episode(sim):
    shares = []
    for i in range(60):
        t = START - 29 * DAY_MS + i * 11 * HOUR_MS + 17 * MINUTE_MS
        shares.append(len(sim.active_episodes(t)) / N)
    assert 0.045 <= statistics.mean(shares) <= 0.10
    assert max(shares) <= 0.15
    assert min(shares) >= 0.01


def test_kickoff_episodes_ramp_in_first_two_hours(sim):
    kick = sim.kickoff_episodes()
    firsts = [e for e in kick if e.kind != "unwind"]
    assert len(firsts) >= 5
    assert any(e.kind == "squeeze" for e in firsts)
    for e in firsts:
        assert START - 2 * HOUR_MS <= e.start_ms <= START + HOUR_MS
        assert e.end_ms > START + HOUR_MS
    # they are all active (ramping in or at plateau) at some point in [start, start+2h]
    active = {e.symbol for t in range(START, START + 2 * HOUR_MS + 1, 10 * MINUTE_MS)
              for e in sim.active_episodes(t)}
    assert {e.symbol for e in firsts} <= active
    # the showcase short squeeze starts with the run: at rest when first seen (so its regime is
    # *entered* later, and alerts), clearly visible 30 simulated minutes in
    sq = next(e for e in firsts if e.kind == "squeeze" and e.side == "short")
    assert sq.start_ms == START + 5 * MINUTE_MS
    first_sight = sim.state(sq.symbol, START)
    assert first_sight.episode is None and abs(first_sight.funding_8h - 0.0001) < 0.0001
    t = START + 30 * MINUTE_MS
    now, hour_ago = sim.state(sq.symbol, t), sim.state(sq.symbol, t - HOUR_MS)
    assert now.funding_8h < -0.001
    assert now.open_interest / hour_ago.open_interest - 1 > 0.03
    assert now.basis < -0.001
    # kickoff symbols are liquid enough to survive a min-volume filter
    qv = {r["symbol"]: float(r["quoteVolume"]) for r in sim.ticker_24hr(at_ms=START)}
    assert all(qv[e.symbol] > 2e6 for e in firsts)
    # overall share right after start is still modest
    assert len(sim.active_episodes(START + HOUR_MS)) <= 0.15 * N


def test_history_before_start_is_available(sim):
    t = START - 29 * DAY_MS
    st = sim.state("BTCUSDT", t)
    assert st.index_price > 0 and st.open_interest > 0
    hist = sim.open_interest_hist("SOLUSDT", "1h", 500, start_time=t, at_ms=START)
    assert len(hist) == 500 and hist[0]["timestamp"] >= t


# ---------------------------------------------------------------------------------------------
# the cached and batched paths serve the values of the plain per-instant ones


def test_batched_klines_and_oi_history_are_the_states_at_their_instants():
    s = MarketSimulator(n_symbols=40, seed=7, start_ms=START, clock=fixed_clock)
    now = START + 5 * HOUR_MS + 17_000
    kick = s.kickoff_episodes()[0].symbol            # an episode's moves are in the path too
    for symbol in ("BTCUSDT", kick, "BTCUSDT_261225"):
        digits = s._spec(symbol).price_digits
        for interval, step in (("1h", HOUR_MS), ("5m", 5 * MINUTE_MS)):
            rows = s.klines(symbol, interval, 80, at_ms=now)
            fresh = MarketSimulator(n_symbols=40, seed=7, start_ms=START, clock=fixed_clock)
            for row in rows:
                close_at = min(row[0] + step, now)
                assert row[1] == f"{fresh.state(symbol, row[0]).mark_price:.{digits}f}"      # open
                assert row[4] == f"{fresh.state(symbol, close_at).mark_price:.{digits}f}"    # close
        qty = s._spec(symbol).qty_digits
        for row in s.open_interest_hist(symbol, "5m", 100, at_ms=now):
            oi = round(MarketSimulator(n_symbols=40, seed=7, start_ms=START).state(symbol, row["timestamp"])
                       .open_interest, qty)
            assert row["sumOpenInterest"] == f"{oi:.{max(qty, 8)}f}"


def test_the_minute_path_is_the_states_and_its_cache_is_bounded(monkeypatch):
    from bot.demo_market import market
    monkeypatch.setattr(market, "_MINUTE_BLOCKS_MAX", 5)
    s = MarketSimulator(n_symbols=40, seed=7, start_ms=START, clock=fixed_clock)
    kick = s.kickoff_episodes()[0].symbol
    first = (START - 2 * HOUR_MS) // MINUTE_MS + 7
    for symbol in ("ETHUSDT", kick):
        for _ in range(2):                           # computed, then (partly evicted and) served again
            marks, ois, episodes = s.minute_path(symbol, first, first + 4 * 60 + 3)
            assert len(s._minute_blocks) <= 5 and len(marks) == len(ois) == len(episodes) == 4 * 60 + 3
            states = [s.state(symbol, (first + i) * MINUTE_MS) for i in range(len(marks))]
            assert marks == [st.mark_price for st in states] and ois == [st.open_interest for st in states]
            assert episodes == [st.episode for st in states] and any(episodes) == (symbol == kick)
