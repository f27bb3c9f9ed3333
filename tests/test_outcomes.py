"""A signal's outcome: price and OI 1h/4h/24h after it fired, from our own history, once 24h passed."""
from __future__ import annotations

from bot.outcomes import record_outcomes
from bot.records import OIPoint
from bot.store import Store

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


def test_hourly_pruning_counts_back_from_the_exchange_time_not_the_local_clock(tmp_path):
    """A server clock days ahead of the exchange (or an exchange days behind) must not wipe the history
    the 1h/4h/24h changes come from: retention is measured from the last cycle's exchange time."""
    from types import SimpleNamespace

    from bot.app import hourly_housekeeping
    from bot.config import Config

    store = Store(tmp_path / "p.db")
    old = T0 - 3 * 24 * H                        # the exchange's clock sits far behind the local one
    store.add_oi_points([OIPoint("XUSDT", old - h * H, 1000, 100) for h in range(0, 60)])
    store.commit_alert_cycle({"ts": old, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {}, [], [], [])
    cfg = Config()
    hourly_housekeeping(SimpleNamespace(store=store, cfg=cfg))
    kept = store.oi_series("XUSDT", 0)
    assert len(kept) == cfg.history.retention_hours + 1          # hours 0..retention kept, the rest pruned
    assert min(p.ts for p in kept) == old - cfg.history.retention_hours * H
