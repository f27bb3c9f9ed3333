"""How our score compares with the reference, and what the demo's simulated market looks like under it.

1. The reference API's three published items (all five inputs): points per contribution and the score.
2. The 11 rows of the reference page we share (tests/data/seed-examples.csv; the page hides the 4h change, so
   it counts 0 here): Spearman rank correlation, direction agreement, mean absolute error, label agreement.
3. The band and regime distribution of the simulated market (300 symbols, seed 7, 48 hourly snapshots).

Run: python bench/calibration.py
"""
from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

from bot.config import load_config
from bot.demo_market.market import HOUR_MS, MarketSimulator
from bot.performance import spearman as rank_correlation
from bot.score import CONTRIBUTIONS, ScoreInputs, score, score_all

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
API_KEYS = {api: name for name, (_, api) in CONTRIBUTIONS.items()}


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho of two paired lists (bot.performance's, which the /perf report uses)."""
    return rank_correlation(list(zip(a, b)))[0]


def api_items(cfg) -> None:
    ref = json.loads((DATA / "reference-api-examples.json").read_text())
    print("1. The reference API's published items")
    worst = 0.0
    for item in ref["items"]:
        c = item["components"]
        r = score(ScoreInputs(item["symbol"], funding_rate=c["fundingRatePct"] / 100, oi_change_1h=c["oi1hPct"] / 100,
                              oi_change_4h=c["oi4hPct"] / 100, oi_change_24h=c["oi24hPct"] / 100,
                              basis=c["basisPct"] / 100), cfg)
        diff = max(abs(r.contributions[API_KEYS[k]] - v) for k, v in item["contributions"].items())
        worst = max(worst, diff)
        print(f"  {item['symbol']:9} ours {r.score:3} {r.bias:6} | ref {item['score']:3} {item['direction']:6}"
              f"  largest contribution difference {diff:.3f} pt")
    print(f"  -> scores exact: yes; every contribution within {worst:.3f} point\n")


def page_rows(cfg) -> None:
    ref = {r["symbol"]: r for r in csv.DictReader(open(DATA / "seed-examples.csv"))}
    rows = json.loads((DATA / "seed_rows.json").read_text())
    ours, theirs, bias_ok, label_ok, err = [], [], 0, 0, 0
    print("2. The reference page's rows (4h change hidden by the page: 0 here)")
    print(f"  {'symbol':12} {'ours':>4} {'dir':7} | {'ref':>4} {'dir':7}  label")
    for r in score_all([ScoreInputs(**row) for row in rows], cfg):
        x = ref[r.symbol]
        ours.append(abs(r.signed))
        theirs.append(int(x["score"]))
        bias_ok += r.bias == x["bias"]
        label_ok += r.regime_label == x["regime"]
        err += abs(r.score - int(x["score"]))
        print(f"  {r.symbol:12} {r.score:4} {r.bias:7} | {x['score']:>4} {x['bias']:7}  "
              f"{'same' if r.regime_label == x['regime'] else 'ours: ' + r.regime_label}")
    n = len(rows)
    print(f"  -> Spearman {spearman(ours, theirs):.2f} · direction {bias_ok}/{n} · labels {label_ok}/{n} · "
          f"mean absolute error {err / n:.1f} points\n")


def simulated_market(cfg, symbols: int = 300, hours: int = 48) -> None:
    start = 1_794_960_000_000
    sim = MarketSimulator(n_symbols=symbols, seed=7, start_ms=start, clock=lambda: 0.0)
    bands, regimes, n = collections.Counter(), collections.Counter(), 0

    def change(a: float, b: float) -> float:
        return a / b - 1

    for k in range(hours):
        t = start + k * HOUR_MS
        inputs = []
        for s in sim.symbols():
            now, h1, h4, d1 = (sim.state(s, t - h * HOUR_MS) for h in (0, 1, 4, 24))
            inputs.append(ScoreInputs(s, now.funding_rate, now.interval_h,
                                      change(now.open_interest, h1.open_interest),
                                      change(now.open_interest, h4.open_interest),
                                      change(now.open_interest, d1.open_interest), now.basis,
                                      change(now.index_price, h1.index_price), change(now.index_price, d1.index_price)))
        for r in score_all(inputs, cfg):
            bands[r.band] += 1
            regimes[r.regime_key] += 1
            n += 1
    print(f"3. The simulated market ({symbols} symbols, seed 7, {hours} hourly snapshots)")
    print("  bands:   " + " · ".join(f"{b} {100 * bands[b] / n:.1f} %" for b in ("neutral", "lean", "stretched", "stressed")))
    print("  regimes: " + " · ".join(f"{k} {100 * c / n:.2f} %" for k, c in regimes.most_common()))


def main() -> None:
    cfg = load_config(ROOT / "config/bot.yaml").score
    api_items(cfg)
    page_rows(cfg)
    simulated_market(cfg)


if __name__ == "__main__":
    main()
