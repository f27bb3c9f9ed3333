"""A signal's outcome: price and OI 1h/4h/24h after it fired, from our own history, once 24h passed."""
from __future__ import annotations

from bot.outcomes import record_outcomes
from bot.store import OIPoint, Store

H = 3_600_000
T0 = 1_800_000_000_000


def test_outcome_recorded_once_a_day_has_passed(tmp_path):
    store = Store(tmp_path / "o.db")
    store.add_oi_points([OIPoint("XUSDT", T0 + h * H, 1000 + 10 * h, 100 + h) for h in range(0, 26)])
    sig = dict(id="SIG00001", ts=T0, symbol="XUSDT", rule="cross:60", kind="threshold", score=61, bias="LONG",
               regime="Long crowded", receipt={})

    def cycle(ts):
        store.commit_alert_cycle({"ts": ts, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                                 [sig], [], [])

    cycle(T0 + 10 * H)
    assert record_outcomes(store) == 0                      # too early: a day has not passed
    cycle(T0 + 25 * H)
    assert record_outcomes(store) == 1
    out = store.signal("SIG00001")["outcome"]
    assert out["1h"] == {"price_change": round(101 / 100 - 1, 6), "oi_change": round(1010 / 1000 - 1, 6)}
    assert out["24h"]["price_change"] == round(124 / 100 - 1, 6)
    assert record_outcomes(store) == 0                      # never twice
