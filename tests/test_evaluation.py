"""Closed signals on constructed candle paths (bot.evaluation): TP first, SL first, the tie rule, gaps, timeout,
delisting, missing candles; the fee and funding arithmetic."""
import pytest

from bot.evaluation import (Candle, Costs, FundingSample, Plan, SignalInput, atr, evaluate, funding_bps, net_bps,
                            walk)

H = 3_600_000
M5 = 300_000
T0 = 1_000 * H                      # the signal's cycle (a whole hour)
PLAN = Plan(tp_atr=1.5, sl_atr=1.0, timeout_ms=4 * H)
COSTS = Costs(taker_fee_bps=5, slippage_bps=2)


def hourly(n=15, price=100.0, rng=2.0):
    """n hourly candles closing at T0, each ranging ±rng/2 around `price`: ATR = rng."""
    return [Candle(T0 - (n - i) * H, price, price + rng / 2, price - rng / 2, price, T0 - (n - i - 1) * H)
            for i in range(n)]


def path(*ranges, start=T0, step=M5):
    """5m candles from `start`: each (open, high, low, close)."""
    return [Candle(start + i * step, o, h, lo, c, start + (i + 1) * step) for i, (o, h, lo, c) in enumerate(ranges)]


def flat(n, price=100.0, start=T0):
    return path(*[(price, price + 0.1, price - 0.1, price)] * n, start=start)


def run(bias="LONG", walk_candles=(), now=T0 + 5 * H, funding=(), atr_candles=None, entry=100.0):
    sig = SignalInput("SIG1", T0, "BTCUSDT", bias, entry)
    return evaluate(sig, PLAN, COSTS, hourly() if atr_candles is None else atr_candles, list(walk_candles), M5,
                    list(funding), now)


def test_atr_is_the_mean_true_range():
    assert atr(hourly(rng=2.0)) == pytest.approx(2.0)
    assert atr(hourly(n=1)) is None


def test_tp_first_long():
    # ATR 2: TP1 103, SL 98
    out = run(walk_candles=flat(3) + path((100, 103.5, 99.5, 103), start=T0 + 3 * M5))
    assert out["status"] == "TP1" and out["follow"]["exit"] == 103
    assert out["follow"]["net_bps"] == pytest.approx(300 - 14)
    # the fade (SHORT) has its own levels: TP1 97, SL 102, touched by the same candle
    assert out["fade"]["status"] == "SL" and out["fade"]["exit"] == 102
    assert out["fade"]["net_bps"] == pytest.approx(-200 - 14)
    assert out["closed"] == T0 + 4 * M5


def test_sl_first_short():
    # SHORT: TP1 97, SL 102
    out = run("SHORT", walk_candles=path((100, 102.5, 99.8, 102.2), (102, 102, 96, 96)))
    assert out["status"] == "SL" and out["follow"]["exit"] == 102
    assert out["follow"]["net_bps"] == pytest.approx(-200 - 14)
    # the fade (LONG: TP1 103, SL 98) misses its TP1 at 102.5, then the 96 low takes its SL: both can lose
    assert out["fade"]["direction"] == "LONG" and out["fade"]["status"] == "SL" and out["fade"]["exit"] == 98


def test_same_candle_tie_is_sl_for_both_trades():
    out = run(walk_candles=path((100, 104, 96, 101)))
    assert out["follow"]["status"] == "SL" and out["fade"]["status"] == "SL"
    assert "tie rule" in out["follow"]["reason"]
    assert out["follow"]["exit"] == 98 and out["fade"]["exit"] == 102


def test_gap_through_both_fills_sl_at_the_open():
    out = run(walk_candles=flat(2) + path((95, 104, 94, 96), start=T0 + 2 * M5))
    assert out["follow"]["status"] == "SL" and out["follow"]["exit"] == 95
    assert "gap" in out["follow"]["reason"]
    assert out["follow"]["net_bps"] == pytest.approx(-500 - 14)


def test_gap_beyond_tp_fills_at_tp1_no_bonus():
    assert walk(1, 103, 98, path((105, 106, 104.5, 105)), T0 + H).price == 103


def test_open_until_the_timeout_then_closes_at_the_last_close():
    candles = flat(48, 100.5)                              # 4 h of 5m candles, nothing touched
    assert run(walk_candles=candles[:20], now=T0 + 20 * M5) is None      # still open
    out = run(walk_candles=candles, now=T0 + 4 * H)
    assert out["status"] == "TIMEOUT" and out["reason"] is None and out["exit"] == 100.5
    assert out["follow"]["net_bps"] == pytest.approx(50 - 14) and out["fade"]["net_bps"] == pytest.approx(-50 - 14)
    assert out["missing_candles"] == 0


def test_delisted_candles_stop_early_timeout_with_reason():
    out = run(walk_candles=flat(10, 101), now=T0 + 5 * H)
    assert out["status"] == "TIMEOUT" and "delisted" in out["reason"] and out["exit"] == 101
    assert out["missing_candles"] == 38


def test_no_candles_at_all_timeout_with_reason_and_no_return():
    assert run(walk_candles=[], now=T0 + H) is None
    out = run(walk_candles=[], now=T0 + 5 * H)
    assert out["status"] == "TIMEOUT" and "no candles" in out["reason"]
    assert out["follow"]["net_bps"] is None and out["exit"] is None


def test_missing_candles_are_counted_and_the_rest_walked():
    candles = flat(48)
    out = run(walk_candles=candles[:10] + candles[15:], now=T0 + 5 * H)
    assert out["status"] == "TIMEOUT" and out["missing_candles"] == 5


def test_candles_before_the_entry_and_unclosed_ones_are_ignored():
    early = path((100, 110, 90, 100), start=T0 - M5)            # opened before the signal
    unclosed = path((100, 110, 99, 105), start=T0 + M5)          # closes after `now`
    assert run(walk_candles=early + unclosed, now=T0 + M5 + 1) is None


def test_neutral_has_only_the_move_lens():
    out = run("NEUTRAL", walk_candles=path((100, 105, 99, 104)) + flat(47, start=T0 + M5), now=T0 + 4 * H)
    assert out["status"] == "TIMEOUT" and out["follow"] is None and out["fade"] is None
    assert out["move"]["max_up_bps"] == pytest.approx(500) and out["move"]["max_down_bps"] == pytest.approx(-100)
    assert out["move"]["realised_vol"]["1h"]["vol"] is not None


def test_no_atr_closes_at_timeout_with_reason():
    assert run(walk_candles=flat(48), atr_candles=[], now=T0 + H) is None
    out = run(walk_candles=flat(48), atr_candles=[], now=T0 + 4 * H)
    assert out["status"] == "TIMEOUT" and "no ATR" in out["reason"] and out["follow"] is None


def test_fee_arithmetic():
    assert COSTS.round_trip_bps == 14
    assert net_bps(1, 100, 101, COSTS, 0) == pytest.approx(86)
    assert net_bps(-1, 100, 101, COSTS, 0) == pytest.approx(-114)


def test_funding_paid_by_longs_received_by_shorts_at_each_settlement():
    samples = [FundingSample(T0 - H, 0.0001, 8), FundingSample(T0 + 9 * H, 0.0003, 8)]
    start = 1000 * H - 2 * H                      # T0 is hour 1000 = 8·125: a settlement; start 2 h before it
    # settlements in (start, start + 12h]: hours 1000 and 1008, both at the rate stored at hour 999 (1 bp each)
    assert funding_bps(1, start, start + 12 * H, samples) == pytest.approx(1 + 1)
    assert funding_bps(-1, start, start + 12 * H, samples) == pytest.approx(-2)
    # hours 1016 and 1024 see the rate stored at hour 1009 (3 bp each)
    assert funding_bps(1, start, start + 27 * H, samples) == pytest.approx(1 + 1 + 3 + 3)
    assert funding_bps(1, start, start + H, samples) == 0                              # no settlement crossed
    assert funding_bps(0, start, start + 27 * H, samples) == 0


def test_funding_enters_net():
    candles = flat(48, 100.0, start=T0)
    out = run(walk_candles=candles, now=T0 + 4 * H, funding=[FundingSample(T0 - H, 0.0002, 1)])
    # hourly settlements at T0+1h..T0+4h (exit at T0+4h): 4 × 2 bps paid by the long, received by the short
    assert out["follow"]["funding_bps"] == pytest.approx(8) and out["fade"]["funding_bps"] == pytest.approx(-8)
    assert out["follow"]["net_bps"] == pytest.approx(-14 - 8) and out["fade"]["net_bps"] == pytest.approx(-14 + 8)


def test_the_signal_stays_open_until_the_fade_has_closed_too():
    took_tp = path((100, 103.5, 99.9, 103))                     # follow TP1 (103); the fade's SL (102) too
    assert run(walk_candles=took_tp, now=T0 + H)["status"] == "TP1"
    # a move that takes the follow's TP1 (103) without reaching the fade's SL... impossible here (102 < 103), so
    # widen the fade's stop by a plan with sl_atr 2: fade SL at 104
    sig = SignalInput("SIG1", T0, "BTCUSDT", "LONG", 100.0)
    wide = Plan(tp_atr=1.5, sl_atr=2.0, timeout_ms=4 * H)
    assert evaluate(sig, wide, COSTS, hourly(), took_tp, M5, [], T0 + H) is None      # the fade is still open
    out = evaluate(sig, wide, COSTS, hourly(), took_tp + flat(47, 103, start=T0 + M5), M5, [], T0 + 4 * H)
    assert out["status"] == "TP1" and out["closed"] == T0 + M5                        # the follow's close
    assert out["fade"]["status"] == "TIMEOUT" and out["fade"]["reason"] is None and out["fade"]["exit"] == 103
