"""A signal's outcome: what price and open interest did 1h, 4h and 24h after it fired.

Filled in by the hourly housekeeping from our own OI/price history, once 24h have passed.
"""
from __future__ import annotations

from .market import HOUR_MS, change, nearest
from .records import HorizonOutcome, Outcome, SignalRecord
from .store import Store

HORIZONS = {"1h": 1, "4h": 4, "24h": 24}
TOLERANCE_MS = 20 * 60_000


def outcome_for(store: Store, sig: SignalRecord) -> Outcome:
    series = store.oi_series(sig["symbol"], sig["ts"] - TOLERANCE_MS)
    start = nearest(series, sig["ts"], TOLERANCE_MS)

    def after(hours: int) -> HorizonOutcome | None:
        later = nearest(series, sig["ts"] + hours * HOUR_MS, TOLERANCE_MS)
        if not (start and later):
            return None
        p = change(later.price, start.price)
        o = change(later.oi, start.oi)
        return HorizonOutcome(price_change=round(p, 6) if p is not None else None,
                              oi_change=round(o, 6) if o is not None else None)

    return Outcome({"1h": after(HORIZONS["1h"]), "4h": after(HORIZONS["4h"]), "24h": after(HORIZONS["24h"])})


def record_outcomes(store: Store) -> int:
    """Outcome of every signal at least 24h old (exchange time of the latest cycle) that has none."""
    last = store.last_cycle()
    if not last:
        return 0
    done = 0
    for sig in store.signals_without_outcome(last["ts"] - 24 * HOUR_MS - TOLERANCE_MS):
        store.set_outcome(sig["id"], outcome_for(store, sig))
        done += 1
    return done
