"""Sealing's cost per cycle: 600 score rows (+ a few signals) committed with and without their seal.

A cycle's seal is: each score row's canonical JSON (RFC 8785, `rfc8785`, pure Python) and SHA-256 leaf,
hashed by the engine before the commit (`Sealer.prepare`, outside the store's lock); then, inside the commit's
transaction, the signals' leaves, the RFC 6962 root, the Ed25519 signature, each signal's inclusion proof and
the manifest row. Timed per cycle, side by side on two database files:

- commit: `Store.commit_alert_cycle` as before sealing (cycle, scores, rule state, signals, outbox);
- sealed: `Sealer.prepare` + the same commit with `seal=`;
- added = sealed - commit (median over the cycles), and its ratio to the commit alone.

Rows are shaped like the collector's (inputs, score fields, contributions, the raw exchange receipt), with
values that change every cycle. Target: the added time stays under 100 ms per cycle, 5 % of the 2 s a
600-symbol cycle may take (bench/cycle.py's target), and none of it on the event loop (the engine commits in
a worker thread). RFC 8785 in pure Python is most of it (~100 µs per score row of ~1.1 kB).

Run: python bench/sealing.py [--symbols 600] [--cycles 15] [--signals 5]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from _common import banner, median, ratio, result

from bot.config import Config
from bot.records import SymbolStateRow
from bot.score import ScoreInputs, score_all
from bot.sealing import Sealer, SigningKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from bot.store import Store

TARGET_MS = 100.0


def rows(n: int, ts: int, rng: random.Random, cfg: Config) -> list[dict]:
    inputs = [ScoreInputs(f"C{i:03d}USDT", rng.uniform(-0.001, 0.001), 8, rng.uniform(-0.03, 0.03),
                          rng.uniform(-0.06, 0.06), rng.uniform(-0.15, 0.15), rng.uniform(-0.003, 0.003),
                          rng.uniform(-0.02, 0.02), rng.uniform(-0.08, 0.08)) for i in range(n)]
    out = []
    for r in (x.as_dict() for x in score_all(inputs, cfg.score)):
        price = rng.uniform(0.01, 90_000)
        out.append(dict(r, raw={
            "time": ts, "mark_price": round(price, 4), "index_price": round(price * 0.9998, 4),
            "funding_rate": r["funding_rate"], "funding_interval_hours": 8.0, "funding_interval_source": "fundingInfo",
            "price_change_24h_pct": round(rng.uniform(-9, 9), 3), "last_price": f"{price:.4f}",
            "oi": {"now": [ts, rng.uniform(1e3, 1e7)], "1h": [ts - 3_600_000, rng.uniform(1e3, 1e7)],
                   "4h": [ts - 14_400_000, rng.uniform(1e3, 1e7)], "24h": [ts - 86_400_000, rng.uniform(1e3, 1e7)]},
            "price_1h_ago": [ts - 3_600_000, price * 0.99]}))
    return out


def signals(results: list[dict], ts: int, k: int) -> list[dict]:
    return [dict(id=f"S{ts % 10**6:06d}{i:02d}", ts=ts, symbol=r["symbol"], rule="cross:60", kind="threshold",
                 score=r["score"], bias=r["bias"], regime=r["regime"],
                 receipt={"rule": "cross:60", "kind": "threshold", "threshold": 60, "prev_score": 50,
                          "score": r["score"], "band": r["band"], "bias": r["bias"], "regime": r["regime"],
                          "reason": r["reason"], "contributions": r["contributions"], "inputs": {}, "raw": r["raw"]})
            for i, r in enumerate(results[:k])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--cycles", type=int, default=15)
    p.add_argument("--signals", type=int, default=5)
    args = p.parse_args()
    banner(f"sealing: {args.symbols} score rows + {args.signals} signals per cycle, {args.cycles} cycles")
    cfg, rng = Config(), random.Random(7)
    sealer = Sealer(SigningKey(Ed25519PrivateKey.generate(), "bench"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-sealing-"))
    plain, sealed = Store(tmp / "plain.db"), Store(tmp / "sealed.db")
    commit_ms, sealed_ms, prepare_ms = [], [], []
    ts = 1_763_424_000_000
    for c in range(args.cycles + 2):                       # the first two warm up (page cache, imports)
        ts += 300_000
        results = rows(args.symbols, ts, rng, cfg)
        sigs = signals(results, ts, args.signals)
        state = {r["symbol"]: SymbolStateRow(r["score"], r["bias"], r["regime_key"], {35: True}, 1) for r in results}
        cycle = {"ts": ts, "duration_s": 1.0, "requests": 10, "weight": 40, "failed": {}}
        outbox = [dict(key=f"{ts}:u{i}:console:u{i}", recipient=f"u{i}", channel="console", address=f"u{i}",
                       created=ts, due=ts, signal_ids=[g["id"] for g in sigs]) for i in range(3)]
        order = [0, 1] if c % 2 else [1, 0]                  # alternate which store goes first
        for which in order:
            if which == 0:
                t0 = time.perf_counter()
                plain.commit_alert_cycle(cycle, results, state, sigs, [], outbox)
                t_commit = time.perf_counter() - t0
            else:
                t0 = time.perf_counter()
                prep = sealer.prepare(ts, results)
                t1 = time.perf_counter()
                sealed.commit_alert_cycle(cycle, results, state, sigs, [], outbox, seal=prep)
                t_sealed, t_prepare = time.perf_counter() - t0, t1 - t0
        if c >= 2:
            commit_ms.append(t_commit * 1e3)
            sealed_ms.append(t_sealed * 1e3)
            prepare_ms.append(t_prepare * 1e3)
    plain.close()
    sealed.close()
    added = [s - p for s, p in zip(sealed_ms, commit_ms)]
    m_commit, m_sealed, m_added, m_prepare = median(commit_ms), median(sealed_ms), median(added), median(prepare_ms)
    print(f"commit without seal   median {m_commit:7.1f} ms")
    print(f"commit with seal      median {m_sealed:7.1f} ms   (of which Sealer.prepare, before the commit: "
          f"{m_prepare:.1f} ms = {m_prepare / args.symbols * 1000:.0f} µs per score row)")
    in_tx = median([s - pr - c for s, pr, c in zip(sealed_ms, prepare_ms, commit_ms)])
    print(f"inside the transaction (root, signature, proofs, manifest row): median {in_tx:.1f} ms more under the "
          "store's lock")
    print(f"added by sealing      median {m_added:7.1f} ms per cycle = {m_added / m_commit:.2f}x the commit's own time; "
          f"{ratio(m_added, TARGET_MS)}")
    result("sealing", f"added ms per cycle ({args.symbols} symbols)", m_added, TARGET_MS, "ms")


if __name__ == "__main__":
    main()
