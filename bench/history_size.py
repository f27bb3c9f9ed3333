"""History at one-minute cycles: database size and memory for 600 symbols x 48 h (OI bounded by thinning).

OI history: 48 h of one-minute cycles for 600 symbols written through `Store.add_oi_points`, with the hourly
housekeeping the app runs (`prune_history` past `history.retention_hours`, `thin_history` past `history.fine_hours`
to one point per `history.coarse_step_minutes`), measured at the end: rows, bytes, and what a cycle reads of it (the
three 1h/4h/24h windows: rows, time, Python memory by tracemalloc). Stored scores: `--score-cycles` cycles of 600
scored rows with realistic payloads (the scorer's output and a receipt) written through `Store.save_cycle`; their
bytes per cycle are measured and multiplied out to 48 h: what they would take unthinned. Then the same scored rows
for `--hours` of one-minute cycles in full, with the hourly housekeeping (`prune_history`, `thin_scores` past
`history.scores_fine_hours` to the first cycle of each `history.scores_step_minutes`): the database as it is at the
end (target: a few hundred MB), and the same rows copied into a rowid table of the same columns and index, for the
storage rewrite's choice of table.

Run: python bench/history_size.py [--symbols 600] [--hours 48] [--score-cycles 60]
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path

from _common import CONFIG_PATH, banner, result

from bot.config import load_config
from bot.market import HORIZONS_H, HOUR_MS
from bot.records import OIPoint
from bot.score import ScoreInputs, score_all
from bot.store import Store

MIN = 60_000
T0 = 1_795_046_400_000
TARGET_OI_MB = 50.0          # OI history of 600 symbols x 48 h
TARGET_SCORES_MB = 300.0     # stored scores of 600 symbols x 48 h at one-minute cycles, thinned


def db_bytes(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()


def table_bytes(path: Path, table: str) -> int | None:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT SUM(pgsize) FROM dbstat WHERE name=?", (table,)).fetchone()[0]
    except sqlite3.Error:         # SQLite built without dbstat
        return None
    finally:
        con.close()


def oi_history(n: int, hours: int, tmp: Path, cfg) -> dict:
    store = Store(tmp / "oi.db")
    rng = random.Random(7)
    symbols = [f"S{i:03d}USDT" for i in range(n)]
    oi = {s: rng.uniform(1e5, 1e8) for s in symbols}
    h = cfg.history
    step = int(cfg.engine.interval_minutes * MIN)
    t0 = time.perf_counter()
    thinned = 0
    ts = T0
    for k in range(int(hours * 60 * MIN / step)):
        ts = T0 + k * step
        for s in symbols:
            oi[s] *= 1 + rng.gauss(0, 0.001)
        store.add_oi_points([OIPoint(s, ts + 3_000, oi[s], 1.0) for s in symbols])
        if k % int(HOUR_MS / step) == 0:                           # hourly housekeeping, as bot/app.py runs it
            store.prune_history(ts - h.retention_hours * HOUR_MS)
            thinned += store.thin_history(ts - int(h.fine_hours * HOUR_MS), int(h.coarse_step_minutes * MIN))
    store.prune_history(ts - h.retention_hours * HOUR_MS)
    thinned += store.thin_history(ts - int(h.fine_hours * HOUR_MS), int(h.coarse_step_minutes * MIN))
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.thin_history(ts - int(h.fine_hours * HOUR_MS), int(h.coarse_step_minutes * MIN))
    thin_s = time.perf_counter() - t0
    rows = len(store.oi_points_between(0, ts + MIN))
    def read_windows() -> int:
        read = 0
        for name, hh in HORIZONS_H.items():
            tol = h.tolerance_minutes.get(name, 60) * MIN
            read += len(store.oi_points_between(int(ts - hh * HOUR_MS - tol), int(ts - hh * HOUR_MS + tol)))
        return read

    t0 = time.perf_counter()
    read = read_windows()
    read_ms = (time.perf_counter() - t0) * 1000
    tracemalloc.start()
    read_windows()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.close()
    unthinned = n * len(range(0, int(min(hours, h.retention_hours) * 60 * MIN), step))
    return dict(rows=rows, unthinned=unthinned, bytes=db_bytes(tmp / "oi.db"), table=table_bytes(tmp / "oi.db", "oi_history"),
                write_s=write_s, thin_s=thin_s, read=read, read_ms=read_ms, read_peak=peak, thinned=thinned)


def scored_cycle(rng: random.Random, symbols: list[str], ts: int, cfg) -> list[dict]:
    """One cycle's rows as the engine stores them: the scorer's output and a market receipt."""
    inputs = [ScoreInputs(s, rng.gauss(0, 3e-4), 8.0, rng.gauss(0, 0.01), rng.gauss(0, 0.03), rng.gauss(0, 0.08),
                          rng.gauss(0, 1e-3), rng.gauss(0, 0.01), rng.gauss(0, 0.04)) for s in symbols]
    rows = []
    for r in score_all(inputs, cfg.score):
        row = r.as_dict()       # the receipt as the collector makes it: the row's own time and funding inputs
        raw = {"time": ts, "mark_price": 61234.5, "index_price": 61230.1, "funding_rate": row["funding_rate"],
               "funding_interval_hours": row["funding_interval_hours"], "funding_interval_source": "fundingInfo",
               "price_change_24h_pct": -4.56, "last_price": "61234.50",
               "oi": {"now": [ts + 3_000, 123456.789], "1h": [ts - HOUR_MS + 3_000, 120000.123],
                      "4h": [ts - 4 * HOUR_MS + 3_000, 110000.456], "24h": [ts - 24 * HOUR_MS + 3_000, 100000.789]},
               "price_1h_ago": [ts - HOUR_MS + 3_000, 60500.2]}
        rows.append(dict(row, raw=raw))
    return rows


def score_rows(n: int, cycles: int, tmp: Path, cfg) -> dict:
    store = Store(tmp / "scores.db")
    rng = random.Random(3)
    symbols = [f"S{i:03d}USDT" for i in range(n)]
    base = db_bytes(tmp / "scores.db")
    for k in range(cycles):
        ts = T0 + k * MIN
        rows = scored_cycle(rng, symbols, ts, cfg)
        store.save_cycle(ts, 1.0, n + 2, n + 50, rows, {})
    payload = len(store.cycle_score_rows(ts)[0][4].encode())
    store.close()
    per_cycle = (db_bytes(tmp / "scores.db") - base) / cycles
    return dict(per_cycle=per_cycle, payload=payload)


def thinned_scores(n: int, hours: int, tmp: Path, cfg) -> dict:
    """`hours` of one-minute cycles written in full with the hourly housekeeping; sizes at the end."""
    path = tmp / "thinned.db"
    store = Store(path)
    rng = random.Random(5)
    symbols = [f"S{i:03d}USDT" for i in range(n)]
    h = cfg.history
    t0 = time.perf_counter()
    thinned = 0
    cycles = hours * 60
    for k in range(cycles):
        ts = T0 + k * MIN
        store.save_cycle(ts, 1.0, n + 2, n + 50, scored_cycle(rng, symbols, ts, cfg), {})
        if k % 60 == 59 or k == cycles - 1:                       # hourly housekeeping, as bot/app.py runs it
            store.prune_history(ts - h.retention_hours * HOUR_MS)
            thinned += store.thin_scores(ts - int(h.scores_fine_hours * HOUR_MS), h.scores_step_ms)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.thin_scores(ts - int(h.scores_fine_hours * HOUR_MS), h.scores_step_ms)
    thin_s = time.perf_counter() - t0
    rows = store._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    store.close()
    table = table_bytes(path, "scores")
    index = table_bytes(path, "scores_symbol_ts")
    # The same rows in a rowid table (same columns, primary key and index), for the storage rewrite's choice.
    con = sqlite3.connect(tmp / "rowid.db")
    con.execute("ATTACH DATABASE ? AS src", (str(path),))
    con.execute("CREATE TABLE scores (ts INTEGER NOT NULL, symbol TEXT NOT NULL, score INTEGER NOT NULL, "
                "bias TEXT NOT NULL, regime TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (ts, symbol))")
    con.execute("CREATE INDEX scores_symbol_ts ON scores (symbol, ts)")
    con.execute("INSERT INTO scores SELECT * FROM src.scores ORDER BY ts, symbol")
    con.commit()
    con.execute("DETACH DATABASE src")
    rowid = sum(con.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN ('scores', 'scores_symbol_ts', "
                            "'sqlite_autoindex_scores_1')").fetchone()[0:1] or [0]) if table else None
    con.close()
    return dict(rows=rows, written=cycles * n, cycles=cycles, bytes=db_bytes(path), table=table, index=index,
                rowid=rowid, thinned=thinned, write_s=write_s, thin_s=thin_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--hours", type=int, default=48)
    p.add_argument("--score-cycles", type=int, default=60)
    a = p.parse_args()
    banner(f"history: {a.symbols} symbols x {a.hours} h at the default cadence")
    cfg = load_config(CONFIG_PATH)
    mb = 1 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        o = oi_history(a.symbols, a.hours, Path(tmp), cfg)
        s = score_rows(a.symbols, a.score_cycles, Path(tmp), cfg)
        t = thinned_scores(a.symbols, a.hours, Path(tmp), cfg)
    h = cfg.history
    print(f"OI history: {o['rows']:,} rows kept of {o['unthinned']:,} written within retention "
          f"(every point for {h.fine_hours:g} h, then one per {h.coarse_step_minutes:g} min; {o['thinned']:,} thinned); "
          f"database {o['bytes'] * mb:.1f} MB" + (f" (oi_history {o['table'] * mb:.1f} MB)" if o["table"] else "")
          + f"; written in {o['write_s']:.0f}s; one hourly thinning pass {o['thin_s'] * 1000:.0f} ms")
    print(f"a cycle reads {o['read']:,} points for its 1h/4h/24h windows in {o['read_ms']:.0f} ms, "
          f"{o['read_peak'] * mb:.1f} MB of Python memory at peak (tracemalloc)")
    per_48h = s["per_cycle"] * 48 * 60 / cfg.engine.interval_minutes
    print(f"stored scores: {s['per_cycle'] * mb:.2f} MB per cycle of {a.symbols} rows (payload ~{s['payload']} bytes "
          f"a row) -> {per_48h / 1e9:.2f} GB for 48 h of {cfg.engine.interval_minutes:g}-minute cycles "
          f"(x{cfg.engine.interval_minutes and 5 / cfg.engine.interval_minutes:g} the 5-minute cadence's)")
    kept_mb = (t["table"] or 0) + (t["index"] or 0)
    print(f"stored scores, thinned: {a.hours} h of one-minute cycles written in full ({t['written']:,} rows in "
          f"{t['write_s']:.0f}s), {t['rows']:,} kept (every cycle for {h.scores_fine_hours:g} h, then the first of each "
          f"{h.scores_step_minutes:g} min; {t['thinned']:,} thinned): database {t['bytes'] * mb:.1f} MB"
          + (f" (scores {t['table'] * mb:.1f} MB + index {t['index'] * mb:.1f} MB)" if t["table"] else "")
          + f"; one hourly thinning pass {t['thin_s'] * 1000:.0f} ms")
    if t["rowid"]:
        print(f"  the same rows in a rowid table (same columns, key and index): {t['rowid'] * mb:.1f} MB against "
              f"{kept_mb * mb:.1f} MB WITHOUT ROWID ({t['rowid'] / kept_mb:.2f}x): rows of ~1 KB overflow a "
              "WITHOUT ROWID table's pages")
    result("history", f"OI history db size @{a.symbols}x{a.hours}h", o["bytes"] * mb, TARGET_OI_MB, "MB")
    result("history", "OI rows kept / written", o["rows"] / max(1, o["unthinned"]), 0, "share")
    result("history", "cycle's window read, peak Python memory", o["read_peak"] * mb, 0, "MB")
    result("history", f"stored scores @{a.symbols}x48h (extrapolated)", per_48h * mb, 0, "MB")
    result("history", f"scores db size, thinned @{a.symbols}x{a.hours}h", t["bytes"] * mb, TARGET_SCORES_MB, "MB")
    if t["rowid"]:
        result("history", "scores table+index as a rowid table / WITHOUT ROWID", t["rowid"] / kept_mb, 0, "ratio")


if __name__ == "__main__":
    main()
