"""Scoring time for 10 000 symbols: score_all over random but realistic ScoreInputs (target <= 50 ms).

Inputs follow the shapes the collector produces: funding per the symbol's own interval (75 % 8h,
23 % 4h, 2 % 1h) around the 0.01 %/8h baseline with fat tails, OI changes over 1h/4h/24h, basis and
price changes, a few crowded/squeezed symbols, and some missing values (new listings without 24h of
history, an occasional missing 1h point). The score configuration is config/bot.yaml's.

Run: python bench/scoring.py [--symbols 10000] [--runs 20]
"""
from __future__ import annotations

import argparse
import collections
import random
import time

from _common import CONFIG_PATH, banner, median, ratio, result

from bot.config import load_config
from bot.score import ScoreInputs, score, score_all

TARGET_MS = 50.0


def realistic_inputs(n: int, seed: int = 1) -> list[ScoreInputs]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        interval = rng.choices((8.0, 4.0, 1.0), (75, 23, 2))[0]
        stressed = rng.random() < 0.07                     # ~7 % of symbols in an episode
        f8 = rng.gauss(0.0001, 0.00015) + (rng.choice((-1, 1)) * rng.uniform(0.0005, 0.003) if stressed else 0)
        oi1, oi4, oi24 = rng.gauss(0, 0.008), rng.gauss(0, 0.02), rng.gauss(0, 0.05)
        if stressed:
            oi4 += rng.uniform(-0.1, 0.2)
            oi24 += rng.uniform(-0.1, 0.3)
        new_listing = rng.random() < 0.03
        out.append(ScoreInputs(
            symbol=f"S{i:05d}USDT",
            funding_rate=f8 * interval / 8,
            funding_interval_hours=None if rng.random() < 0.01 else interval,
            oi_change_1h=None if rng.random() < 0.02 else oi1,
            oi_change_4h=None if new_listing and rng.random() < 0.5 else oi4,
            oi_change_24h=None if new_listing else oi24,
            basis=rng.gauss(0, 0.0006) + (f8 * 2 if stressed else 0),
            price_change_1h=None if rng.random() < 0.02 else rng.gauss(0, 0.008),
            price_change_24h=rng.gauss(0, 0.045),
        ))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=20)
    a = p.parse_args()

    banner(f"scoring: score_all over {a.symbols} symbols")
    cfg = load_config(CONFIG_PATH).score
    inputs = realistic_inputs(a.symbols)
    results = score_all(inputs, cfg)                      # warm-up (and a sanity look at the mix)
    bands = collections.Counter(r.band for r in results)
    regimes = collections.Counter(r.regime_key for r in results)
    print("result mix: bands " + ", ".join(f"{k} {v}" for k, v in bands.most_common())
          + "; top regimes " + ", ".join(f"{k} {v}" for k, v in regimes.most_common(5)))

    times, score_only = [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        score_all(inputs, cfg)
        times.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        for i in inputs:
            score(i, cfg)
        score_only.append((time.perf_counter() - t0) * 1000)
    med = median(times)
    print(f"score_all x{a.runs}: median {med:.1f} ms (min {min(times):.1f}, max {max(times):.1f}), "
          f"{med * 1000 / a.symbols:.2f} us/symbol; score() alone {median(score_only):.1f} ms "
          f"(sorting + generator: {med - median(score_only):.1f} ms)")
    print(f"scoring {a.symbols} symbols: {med:.1f} ms vs {TARGET_MS:g} ms: {ratio(med, TARGET_MS)}")
    result("scoring", f"score_all {a.symbols} symbols", med, TARGET_MS, "ms")
    result("scoring", "per symbol", med * 1000 / a.symbols, TARGET_MS * 1000 / 10_000, "us")


if __name__ == "__main__":
    main()
