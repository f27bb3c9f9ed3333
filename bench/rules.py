"""Alert rules for 10 000 users x 20 symbols each: detect + thresholds_in_use + route per cycle (target <= 100 ms).

Recipients are real `Watchlist` objects (pydantic-validated) with varied settings: min_score,
any_symbol_above, bands, regimes, bias flips, cooldowns, time zones with quiet hours (digest or drop),
muted symbols (some expired), alerts off, inactive users. Symbols are drawn with a popularity skew
(majors are on many lists). The market is a 600-symbol result set whose scores evolve cycle to cycle
(mean-reverting walks with occasional shocks, bias flips and regime changes) so that each cycle has a
realistic handful of events (printed). Cooldown state (last_fired) accumulates across cycles as in the
engine (kept in memory here: the engine reads it from SQLite, which is not part of this figure).

Timed per cycle, as Engine._evaluate_and_commit calls them: thresholds_in_use, detect, route.

Run: python bench/rules.py [--users 10000] [--symbols 600] [--cycles 20]
"""
from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta, timezone

from _common import CONFIG_PATH, banner, median, ratio, result

from bot.config import load_config
from bot.rules import ALERT_REGIMES, detect, route, thresholds_in_use
from bot.score import REGIMES
from bot.watchlists import BANDS, DEFAULT_REGIMES, Watchlist

TARGET_MS = 100.0
ZONES = ("UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Asia/Singapore", "Australia/Sydney", "Asia/Kolkata")
QUIET = ("23:00-07:00", "22:00-06:30", "00:00-08:00", "13:00-14:00", "21:30-05:00")
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
ALERTING = sorted(ALERT_REGIMES)


def universe(n: int) -> list[str]:
    majors = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "ADAUSDT", "SUIUSDT",
              "LINKUSDT", "AVAXUSDT", "1000PEPEUSDT", "1000BONKUSDT"]
    return majors + [f"C{i:03d}USDT" for i in range(n - len(majors))]


def popular_sample(rng: random.Random, symbols: list[str], weights: list[float], k: int) -> list[str]:
    chosen: set[str] = set()
    while len(chosen) < k:
        chosen.update(rng.choices(symbols, weights, k=k - len(chosen)))
    return sorted(chosen)


def make_watchlists(n: int, symbols: list[str], rng: random.Random) -> dict[str, Watchlist]:
    weights = [1 / (i + 1) ** 0.8 for i in range(len(symbols))]
    subs = {}
    for u in range(n):
        syms = popular_sample(rng, symbols, weights, 20)
        fields = dict(
            name=f"user {u}", telegram_chat_id=100_000 + u, symbols=syms,
            alerts=rng.random() > 0.05, active=rng.random() > 0.02,
            min_score=rng.choice((None, None, 30, 40, 50, 60, 70)),
            any_symbol_above=rng.choice((None,) * 27 + (50, 60, 75)),
            bands=rng.choice((["stretched", "stressed"],) * 4 + (["stressed"], list(BANDS), ["lean"])),
            regimes=rng.choice((list(DEFAULT_REGIMES),) * 3 + (["short_squeeze_risk", "long_squeeze_risk"],
                                                                ["long_crowded", "short_ramp"], [])),
            bias_flips=rng.random() < 0.7,
            cooldown_minutes=rng.choice((0, 30, 60, 60, 60, 90, 240)),
        )
        if rng.random() < 0.3:
            fields.update(timezone=rng.choice(ZONES), quiet_hours=rng.choice(QUIET),
                          quiet_mode=rng.choice(("digest", "digest", "drop")))
        if rng.random() < 0.1:
            fields["muted"] = {s: (T0 + timedelta(hours=rng.choice((-5, 3, 12, 48)))).isoformat()
                               for s in rng.sample(syms, rng.randint(1, 3))}
        subs[f"tg-{100_000 + u}"] = Watchlist(**fields)
    return subs


class Market:
    """Evolving per-symbol score, bias and regime (the shape of ScoreResult.as_dict that rules read)."""

    def __init__(self, symbols: list[str], rng: random.Random):
        self.rng = rng
        self.symbols = symbols
        self.level = {s: rng.choice((3, 5, 8, 10, 15, 20, 25, 30, 40)) for s in symbols}
        self.score = dict(self.level)
        self.side = {s: rng.choice((1, -1)) for s in symbols}
        self.crowded = {s: None for s in symbols}

    def step(self) -> list[dict]:
        rng, out = self.rng, []
        for s in self.symbols:
            if rng.random() < 0.006:                         # an episode starts or ends: the level moves
                self.level[s] = rng.choice((5, 10, 20, 40, 55, 65, 75))
                self.crowded[s] = rng.choice(ALERTING) if self.level[s] >= 40 and rng.random() < 0.6 else None
            if rng.random() < 0.004:
                self.side[s] = -self.side[s]
            sc = self.score[s] + 0.3 * (self.level[s] - self.score[s]) + rng.gauss(0, 1.5)
            score = max(0, min(100, round(sc)))
            self.score[s] = sc
            bias = "NEUTRAL" if score < 12 else ("LONG" if self.side[s] > 0 else "SHORT")
            regime = self.crowded[s] or {"LONG": "net_long", "SHORT": "net_short", "NEUTRAL": "balanced"}[bias]
            band = "stressed" if score >= 60 else "stretched" if score >= 35 else "lean" if score >= 15 else "neutral"
            out.append({"symbol": s, "score": score, "band": band, "bias": bias, "regime": REGIMES[regime],
                        "regime_key": regime, "reason": "", "contributions": {}, "signed": 0.0, "quadrant": None,
                        "warning": None})
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()

    banner(f"rules: {a.users} users x 20 symbols, {a.symbols} symbol results per cycle")
    cfg = load_config(CONFIG_PATH)
    rng = random.Random(a.seed)
    symbols = universe(a.symbols)
    t0 = time.perf_counter()
    subs = make_watchlists(a.users, symbols, rng)
    print(f"built {len(subs)} Watchlist objects in {time.perf_counter() - t0:.1f}s "
          f"({sum(1 for w in subs.values() if w.quiet_hours)} with quiet hours, "
          f"{sum(1 for w in subs.values() if w.muted)} with mutes, "
          f"{sum(1 for w in subs.values() if w.any_symbol_above is not None)} with any_symbol_above)")

    market = Market(symbols, rng)
    state, last_fired = {}, {}
    max_cooldown = timedelta(minutes=max(w.cooldown_minutes for w in subs.values()))
    now = T0
    rows = []
    for cycle in range(a.cycles + 2):                        # 2 untimed cycles: first sight, then warm
        results = market.step()
        t_a = time.perf_counter()
        thresholds = thresholds_in_use(subs.values(), cfg.rules, cfg.score)
        t_b = time.perf_counter()
        events, state = detect(state, results, thresholds, cfg.rules, int(now.timestamp() * 1000))
        t_c = time.perf_counter()
        deliveries, fired = route(events, subs, last_fired, now, cfg.score)
        t_d = time.perf_counter()
        for key in fired:
            last_fired[key] = now
        last_fired = {k: v for k, v in last_fired.items() if now - v < max_cooldown}   # the engine's window
        if cycle >= 2:
            rows.append(dict(thr=(t_b - t_a) * 1000, det=(t_c - t_b) * 1000, route=(t_d - t_c) * 1000,
                             total=(t_d - t_a) * 1000, events=len(events), deliveries=len(deliveries),
                             held=sum(1 for d in deliveries if d.hold_until), alerts=len(fired)))
        now += timedelta(minutes=cfg.engine.interval_minutes)

    print(f"{'cycle':>5} {'events':>6} {'deliv':>6} {'held':>5} {'alerts':>6} {'thr ms':>7} {'detect ms':>9} "
          f"{'route ms':>8} {'total ms':>8}")
    for i, r in enumerate(rows, 1):
        print(f"{i:5d} {r['events']:6d} {r['deliveries']:6d} {r['held']:5d} {r['alerts']:6d} {r['thr']:7.1f} "
              f"{r['det']:9.2f} {r['route']:8.1f} {r['total']:8.1f}")
    med = median([r["total"] for r in rows])
    ev = [r["events"] for r in rows]
    print(f"events/cycle: median {median(ev):.0f} (min {min(ev)}, max {max(ev)}); thresholds in use: "
          f"{sorted(thresholds)}; last_fired keys at the end: {len(last_fired)}")
    print(f"median per cycle: thresholds_in_use {median([r['thr'] for r in rows]):.1f} ms, "
          f"detect {median([r['det'] for r in rows]):.2f} ms, route {median([r['route'] for r in rows]):.1f} ms")
    print(f"rules per cycle: median {med:.1f} ms (min {min(r['total'] for r in rows):.1f}, "
          f"max {max(r['total'] for r in rows):.1f}) vs {TARGET_MS:g} ms: {ratio(med, TARGET_MS)}")
    result("rules", f"detect+thresholds+route {a.users}x20", med, TARGET_MS, "ms")


if __name__ == "__main__":
    main()
