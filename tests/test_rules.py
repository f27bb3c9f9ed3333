"""Alert rules (pure): crossings with hysteresis, regime entries, bias flips, routing per recipient."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.config import RulesConfig, ScoreConfig
from bot.rules import Event, SymbolState, detect, route, thresholds_in_use
from bot.watchlists import Watchlist

RULES = RulesConfig()
SCORE = ScoreConfig()
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
MIN = 60_000
STEP = 5 * MIN       # these paths are 5-minute cycles


def res(symbol: str, score: int, bias: str = "LONG", regime: str = "net_long") -> dict:
    return {"symbol": symbol, "score": score, "bias": bias, "regime_key": regime, "regime": regime}


def run_path(scores: list[int], thresholds=frozenset({35, 60}), regimes=None) -> list[Event]:
    """Feed a score path for one symbol through detect; return all events."""
    state: dict[str, SymbolState] = {}
    events = []
    for i, s in enumerate(scores):
        regime = regimes[i] if regimes else "net_long"
        ev, state = detect(state, [res("BTCUSDT", s, regime=regime)], set(thresholds), RULES, i * STEP)
        events += ev
    return events


def test_crossing_fires_once_and_rearms_only_after_hysteresis():
    events = run_path([20, 36, 34, 36, 33, 37, 29, 28, 36])
    crossings = [(e.rule, e.score) for e in events if e.kind == "threshold"]
    # 36 fires; wobbling 34/36/33/37 stays quiet (not 5 below 35); 29, 28 (5 minutes below) re-arm; 36 fires again
    assert crossings == [("cross:35", 36), ("cross:35", 36)]
    # one sample 5 below is a dip, not a new episode (rearm_minutes: 5)
    assert [e.rule for e in run_path([20, 36, 29, 36])] == ["cross:35"]


def test_first_sight_never_fires():
    assert run_path([70]) == []
    assert [e.rule for e in run_path([70, 75])] == []


def test_jump_across_two_thresholds_fires_both():
    assert sorted(e.rule for e in run_path([10, 65])) == ["cross:35", "cross:60"]


def test_regime_entry_fires_once_confirmed_and_flapping_stays_quiet():
    ev = run_path([40, 45, 46, 47], regimes=["net_long", "short_squeeze_risk", "short_squeeze_risk",
                                             "short_squeeze_risk"])
    assert [(e.rule, e.score) for e in ev] == [("regime:short_squeeze_risk", 46)]
    flap = ["long_crowded", "long_squeeze_risk"] * 4
    assert run_path([50] * 8, regimes=flap) == []
    assert run_path([50, 50, 50], regimes=["long_crowded"] * 3) == []      # already in it at first sight


def test_bias_flip_once_the_new_bias_has_held_confirm_minutes():
    state = {}
    _, state = detect(state, [res("X", 50, "LONG")], {35}, RULES, 0)
    ev, state = detect(state, [res("X", 52, "SHORT", "net_short")], {35}, RULES, 5 * MIN)
    assert ev == []          # new, not yet held 5 minutes
    ev, state = detect(state, [res("X", 52, "SHORT", "net_short")], {35}, RULES, 10 * MIN)
    assert [e.rule for e in ev] == ["flip:SHORT"]
    _, state = detect(state, [res("X", 20, "SHORT", "net_short")], {35}, RULES, 15 * MIN)
    _, state = detect(state, [res("X", 20, "LONG")], {35}, RULES, 20 * MIN)
    ev, _ = detect(state, [res("X", 20, "LONG")], {35}, RULES, 25 * MIN)
    assert ev == []          # a flip below bias_flip_min_score is noise


def test_symbols_missing_this_cycle_keep_state():
    _, state = detect({}, [res("A", 10), res("B", 10)], {35}, RULES, 0)
    _, state = detect(state, [res("A", 12)], {35}, RULES, STEP)
    ev, _ = detect(state, [res("B", 40)], {35}, RULES, 2 * STEP)
    assert [(e.symbol, e.rule) for e in ev] == [("B", "cross:35")]


def wl(**kw) -> Watchlist:
    return Watchlist(**{"symbols": ["BTCUSDT", "ETHUSDT"], **kw})


def ev(symbol="BTCUSDT", rule="cross:35", score=40, kind="threshold", threshold=35, regime="net_long") -> Event:
    return Event(symbol, rule, kind, score, 20, res(symbol, score, regime=regime), threshold)


def test_route_respects_symbols_bands_and_own_threshold():
    subs = {"a": wl(), "b": wl(bands=["stressed"]), "c": wl(symbols=["SOLUSDT"]), "d": wl(bands=[], min_score=50)}
    events = [ev(), ev(rule="cross:50", threshold=50, score=52)]
    deliveries, fired = route(events, subs, {}, T0, SCORE)
    got = {d.recipient: [e.rule for e in d.events] for d in deliveries}
    assert got == {"a": ["cross:35"], "d": ["cross:50"]}
    assert thresholds_in_use(subs.values(), RULES, SCORE) >= {35, 60, 50}


def test_any_symbol_above():
    subs = {"desk": wl(symbols=[], any_symbol_above=60)}
    events = [ev("DOGEUSDT", "cross:60", 61, threshold=60), ev("DOGEUSDT", "cross:35", 61),
              ev("SOLUSDT", "regime:short_squeeze_risk", 65, "regime", None, "short_squeeze_risk"),
              ev("XRPUSDT", "regime:long_crowded", 40, "regime", None, "long_crowded")]
    (d,), _ = route(events, subs, {}, T0, SCORE)
    assert [(e.symbol, e.rule) for e in d.events] == [("SOLUSDT", "regime:short_squeeze_risk"),
                                                      ("DOGEUSDT", "cross:60")]


def test_squeeze_anywhere_takes_squeeze_regimes_of_any_symbol_whatever_the_score():
    """A squeeze builds OI against the funding bias, so its inputs net out and it can score low: a user
    who asks for squeezes anywhere gets them below any_symbol_above, other regimes still gated by it."""
    events = [ev("SOLUSDT", "regime:short_squeeze_risk", 22, "regime", None, "short_squeeze_risk"),
              ev("XRPUSDT", "regime:long_crowded", 40, "regime", None, "long_crowded"),
              ev("ADAUSDT", "regime:long_squeeze_risk", 9, "regime", None, "long_squeeze_risk")]
    hunter = wl(symbols=[], any_symbol_above=60, squeeze_anywhere=True, regimes=["short_squeeze_risk", "long_crowded"])
    (d,), _ = route(events, {"hunter": hunter}, {}, T0, SCORE)
    assert [(e.symbol, e.rule) for e in d.events] == [("SOLUSDT", "regime:short_squeeze_risk")]
    assert route(events, {"plain": wl(symbols=[], any_symbol_above=60)}, {}, T0, SCORE)[0] == []
    picky = wl(symbols=[], squeeze_anywhere=True, min_score=30)            # min_score still applies
    assert route(events, {"picky": picky}, {}, T0, SCORE)[0] == []


def test_digest_is_one_delivery_ordered_by_score():
    events = [ev("BTCUSDT", score=40), ev("ETHUSDT", score=55),
              ev("BTCUSDT", "regime:long_crowded", 40, "regime", None, "long_crowded")]
    (d,), fired = route(events, {"a": wl()}, {}, T0, SCORE)
    assert [e.score for e in d.events] == [55, 40, 40] and len(fired) == 3


def test_cooldown_per_recipient_symbol_and_rule():
    last = {("a", "BTCUSDT", "cross:35"): T0 - timedelta(minutes=30)}
    deliveries, _ = route([ev(), ev("ETHUSDT")], {"a": wl(), "b": wl()}, last, T0, SCORE)
    got = {d.recipient: [e.symbol for e in d.events] for d in deliveries}
    assert got == {"a": ["ETHUSDT"], "b": ["BTCUSDT", "ETHUSDT"]}
    deliveries, _ = route([ev()], {"a": wl()}, last, T0 + timedelta(minutes=31), SCORE)
    assert len(deliveries) == 1


def test_mute_and_alerts_off_and_inactive():
    subs = {"muted": wl(muted={"BTCUSDT": T0 + timedelta(hours=2)}), "off": wl(alerts=False),
            "gone": wl(active=False), "expired": wl(muted={"BTCUSDT": T0 - timedelta(minutes=1)})}
    deliveries, _ = route([ev()], subs, {}, T0, SCORE)
    assert [d.recipient for d in deliveries] == ["expired"]


def test_quiet_hours_hold_until_local_end_or_drop():
    berlin = wl(timezone="Europe/Berlin", quiet_hours="23:00-07:00")
    night = datetime(2026, 11, 25, 23, 30, tzinfo=timezone.utc)        # 00:30 in Berlin (CET, UTC+1)
    (d,), fired = route([ev()], {"a": berlin}, {}, night, SCORE)
    assert d.hold_until == datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc) and fired
    dropped, fired = route([ev()], {"a": berlin.model_copy(update={"quiet_mode": "drop"})}, {}, night, SCORE)
    assert dropped == [] and fired == []
    (d,), _ = route([ev()], {"a": berlin}, {}, datetime(2026, 11, 25, 12, tzinfo=timezone.utc), SCORE)
    assert d.hold_until is None


def test_quiet_hours_across_dst_changes():
    ny = wl(timezone="America/New_York", quiet_hours="22:00-06:00")
    # 2026-03-08: US clocks spring forward at 02:00; 06:00 EDT = 10:00 UTC (not 11:00 as on the day before)
    (d,), _ = route([ev()], {"a": ny}, {}, datetime(2026, 3, 8, 5, 0, tzinfo=timezone.utc), SCORE)
    assert d.hold_until == datetime(2026, 3, 8, 10, 0, tzinfo=timezone.utc)
    berlin = wl(timezone="Europe/Berlin", quiet_hours="01:00-04:00")
    # 2026-10-25: Berlin falls back 03:00 CEST -> 02:00 CET; 04:00 CET = 03:00 UTC
    (d,), _ = route([ev()], {"a": berlin}, {}, datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc), SCORE)
    assert d.hold_until == datetime(2026, 10, 25, 3, 0, tzinfo=timezone.utc)
