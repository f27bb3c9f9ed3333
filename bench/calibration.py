"""Agreement of our scores with the reference page's rows (tests/data/seed-examples.csv).

Prints Spearman rank correlation, bias agreement and band agreement. Run: python bench/calibration.py
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from bot.config import load_config
from bot.score import ScoreInputs, band_of, score

ROOT = Path(__file__).resolve().parent.parent


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):                      # average ranks for ties
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var


def main() -> None:
    cfg = load_config(ROOT / "config/bot.yaml").score
    ref = {r["symbol"]: r for r in csv.DictReader(open(ROOT / "tests/data/seed-examples.csv"))}
    rows = json.loads((ROOT / "tests/data/seed_rows.json").read_text())
    ours, theirs, bias_ok, band_ok = [], [], 0, 0
    print(f"{'symbol':12} {'ours':>4} {'bias':7} | {'ref':>4} {'bias':7}  regime match")
    for row in rows:
        r = score(ScoreInputs(**row), cfg)
        x = ref[r.symbol]
        ours.append(r.score)
        theirs.append(int(x["score"]))
        bias_ok += r.bias == x["bias"]
        band_ok += r.band == band_of(int(x["score"]), cfg)
        print(f"{r.symbol:12} {r.score:4} {r.bias:7} | {x['score']:>4} {x['bias']:7}  {r.regime_label == x['regime']}")
    n = len(rows)
    print(f"\nSpearman rank correlation: {spearman(ours, theirs):.2f}")
    print(f"Bias agreement: {bias_ok}/{n}   Band agreement: {band_ok}/{n}")


if __name__ == "__main__":
    main()
