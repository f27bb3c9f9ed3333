"""OI history at one-minute cycles: the recent points stay at the cycle's step, older ones are thinned to one per
`history.coarse_step_minutes`, and the 1h/4h/24h changes read the same values either way."""
from __future__ import annotations

from bot.config import Config
from bot.market import HORIZONS_H, HOUR_MS, nearest
from bot.records import OIPoint
from bot.store import Store

MIN = 60_000
T0 = 1_795_046_400_000


def test_points_older_than_the_fine_window_are_thinned_to_one_per_step(db_url):        # SQLite and PostgreSQL
    store = Store(db_url)
    end = T0 + 26 * HOUR_MS
    store.add_oi_points([OIPoint(s, t, 1000.0 + (t - T0) / MIN, 1.0) for s in ("AUSDT", "BUSDT")
                         for t in range(T0 + 7_000, end + 1, MIN)])          # every minute, 7 s past it
    h = Config().history
    boundary = end - int(h.fine_hours * HOUR_MS)
    step = int(h.coarse_step_minutes * MIN)
    before = {name: {s: nearest(store.oi_points_between(end - hours * HOUR_MS - MIN * 10, end - hours * HOUR_MS
                                                        + MIN * 10, [s]), end - hours * HOUR_MS, 10 * MIN)
                     for s in ("AUSDT", "BUSDT")} for name, hours in HORIZONS_H.items()}

    removed = store.thin_history(boundary, step)

    series = store.oi_series("AUSDT", 0)
    old = [p.ts for p in series if p.ts < boundary]
    fine = [p.ts for p in series if p.ts >= boundary]
    assert fine == list(range(boundary - boundary % MIN + 7_000, end + 1, MIN))        # every cycle's point
    assert len({t // step for t in old}) == len(old)                                   # one per 5-minute bucket
    assert all(t % step == 7_000 for t in old)                                         # ... the earliest in it
    assert removed == 2 * (len(range(T0 + 7_000, boundary, MIN)) - len(old))
    assert store.thin_history(boundary, step) == 0                                     # idempotent
    for name, hours in HORIZONS_H.items():
        target = end - hours * HOUR_MS
        for s in ("AUSDT", "BUSDT"):
            got = nearest(store.oi_points_between(target - 10 * MIN, target + 10 * MIN, [s]), target, 10 * MIN)
            if name == "1h":
                assert got == before[name][s]                  # the 1h change reads the very same point
            else:
                assert got is not None and abs(got.ts - target) <= step / 2 + 7_000
    store.close()
