"""Peak RSS of the running engine with 600 symbols and 48h of history (target <= 150 MB).

The real app (`python -m bot --config <tmp> run`) as a child process against the simulator server
(bench/_simserver.py, a separate process, 600 symbols, simulated time x60), with a temporary config
derived from config/bot.yaml: history.backfill_hours 48, universe.min_quote_volume 0 (all 600 scored),
engine.interval_minutes 0.05 (a cycle every 3 s), and — as `bot demo` does for the simulator, whose
cycles come every few wall seconds — a request-weight budget scaled up to match. A temporary database
and a directory of 20 watchlists (so alerts are routed and printed). The bot's VmRSS is sampled from
/proc/<pid>/status after every committed cycle; its peak (VmHWM) is read just before SIGTERM, and
cross-checked with getrusage(RUSAGE_CHILDREN).ru_maxrss once it has exited.

Run: python bench/memory.py [--cycles 15] [--symbols 600] [--timeout 110]

LiqMap (appended): `python bench/memory.py --liqmap` measures, in a child process, what two LiqMap symbols over 7
days of history add to the bot's memory (target <= 20 MB): the refresh's 7-day backfill into the store, 7 days of
recorded force orders, then the 1w map built and rendered for each symbol (three times); VmRSS after it against
VmRSS before it, and the peak (VmHWM). The simulator runs in its own process.
"""
from __future__ import annotations

import argparse
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import CONFIG_PATH, ROOT, banner, median, ratio, result
from _simserver import SimServerProcess

TARGET_MB = 150.0
MAJORS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "ADAUSDT", "SUIUSDT", "LINKUSDT",
          "AVAXUSDT"]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB (empty once the process is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def write_config(tmp: Path, db: Path) -> Path:
    data = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8")) or {}
    data.setdefault("universe", {})["min_quote_volume"] = 0
    data.setdefault("history", {})["backfill_hours"] = 48
    data.setdefault("engine", {})["interval_minutes"] = 0.05
    ex = data.setdefault("exchange", {})
    ex.update(weight_limit=1_000_000, data_limit_per_5m=100_000)
    data.setdefault("storage", {})["db_path"] = str(db)
    path = tmp / "bot.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_watchlists(directory: Path, n: int = 20) -> None:
    directory.mkdir()
    for i in range(n):
        lines = [f"name: bench user {i}", "symbols: [" + ", ".join(MAJORS[: 3 + i % 8]) + "]",
                 f"min_score: {(30, 40, 'null')[i % 3]}",
                 f"any_symbol_above: {50 if i % 4 == 0 else 'null'}", "cooldown_minutes: 0"]
        (directory / f"bench-{i:02d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def cycles_done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
    except sqlite3.Error:
        return 0


def db_stats(db: Path) -> tuple[int, float, list[float]]:
    """OI history rows, the hours they span, and the engine's own cycle durations."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
        rows, lo, hi = c.execute("SELECT COUNT(*), MIN(ts), MAX(ts) FROM oi_history").fetchone()
        durations = [d for (d,) in c.execute("SELECT duration_s FROM cycles ORDER BY ts")]
    return rows, ((hi - lo) / 3_600_000 if rows else 0.0), durations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--cycles", type=int, default=15, help="steady-state cycles to run after the first")
    p.add_argument("--timeout", type=float, default=110.0, help="give up waiting for cycles after this (s)")
    a = p.parse_args()

    banner(f"memory: peak RSS of `python -m bot run`, {a.symbols} symbols, 48h history")
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmpdir, \
            SimServerProcess(a.symbols, speed=60, weight_limit=10**9, futures_data_limit=10**9) as srv:
        tmp = Path(tmpdir)
        db = tmp / "bot.db"
        cfg_path = write_config(tmp, db)
        write_watchlists(tmp / "watchlists")
        out_log, err_log = open(tmp / "stdout.log", "w"), open(tmp / "stderr.log", "w")
        argv = [sys.executable, "-m", "bot", "--config", str(cfg_path), "run", "--exchange-url", srv.url,
                "--db", str(db), "--watchlists", str(tmp / "watchlists")]
        print(f"simulator: {srv.url} ({a.symbols} symbols, x60); bot: python -m bot --config <tmp>/bot.yaml run "
              f"(backfill_hours 48, interval 0.05 min, min_quote_volume 0, 20 watchlists)", flush=True)
        started = time.monotonic()
        bot = subprocess.Popen(argv, cwd=ROOT, stdout=out_log, stderr=err_log)
        samples: list[tuple[int, float, int]] = []       # (cycle, seconds, VmRSS kB)
        peak_kb, seen, first_cycle_s = 0, 0, None
        try:
            while time.monotonic() - started < a.timeout and bot.poll() is None:
                st = proc_status(bot.pid)
                peak_kb = max(peak_kb, st.get("VmHWM", 0))
                n = cycles_done(db)
                if n != seen:
                    seen = n
                    if first_cycle_s is None:
                        first_cycle_s = time.monotonic() - started
                    samples.append((n, time.monotonic() - started, st.get("VmRSS", 0)))
                if n >= a.cycles + 1:
                    break
                time.sleep(0.25)
            peak_kb = max(peak_kb, proc_status(bot.pid).get("VmHWM", 0))
            exit_code = None if bot.poll() is None else bot.returncode
        finally:
            t_stop = time.monotonic()
            if bot.poll() is None:
                bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(timeout=20)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait()
            stop_s = time.monotonic() - t_stop
            out_log.close()
            err_log.close()
        ru_maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # only the bot was reaped so far
        rows, span_h, durations = db_stats(db)
        errors = (tmp / "stderr.log").read_text(errors="replace")
        alerts = (tmp / "stdout.log").read_text(errors="replace").count("🔔")

    if exit_code is not None:
        print(f"bot exited early with code {exit_code}; stderr tail:\n{errors[-2000:]}")
    print(f"first cycle committed after {first_cycle_s or float('nan'):.1f}s (incl. start-up and 48h backfill); "
          f"{seen} cycles committed in {samples[-1][1] if samples else 0:.1f}s; {alerts} console alerts; "
          f"SIGTERM -> exit {bot.returncode} in {stop_s:.1f}s")
    print(f"OI history in the database: {rows} rows, spanning {span_h:.1f} h"
          + (" (less than 48 h: one openInterestHist request per symbol returns at most 500 x 5m = 41.6 h)"
             if span_h < 48 else ""))
    if durations:
        print(f"engine cycle duration_s (no injected latency): median {median(durations):.2f}s, "
              f"max {max(durations):.2f}s")
    shown = samples if len(samples) <= 16 else [samples[round(i * (len(samples) - 1) / 15)] for i in range(16)]
    print("VmRSS after committed cycles: " + ", ".join(f"#{c} {kb / 1024:.0f} MB" for c, _t, kb in shown))
    if len(samples) >= 4:
        mid = samples[len(samples) // 2]
        last = samples[-1]
        print(f"steady-state growth: {(last[2] - mid[2]) / 1024:+.1f} MB over cycles #{mid[0]}-#{last[0]}")
    warn = [ln for ln in errors.splitlines() if " ERROR " in ln or "Traceback" in ln]
    if warn:
        print(f"bot stderr: {len(warn)} error lines, e.g. {warn[0][:200]}")
    peak_mb = peak_kb / 1024
    print(f"peak RSS (VmHWM before SIGTERM): {peak_mb:.1f} MB; ru_maxrss after exit: {ru_maxrss_kb / 1024:.1f} MB")
    print(f"peak RSS {peak_mb:.1f} MB vs {TARGET_MB:g} MB: {ratio(peak_mb, TARGET_MB)}")
    result("memory", f"peak RSS @{a.symbols} symbols, 48h", peak_mb, TARGET_MB, "MB")


# ---- LiqMap: two symbols over 7 days of history (target <= 20 MB) -------------------------------------------
LIQMAP_TARGET_MB = 20.0


def liqmap_child(url: str, db: str) -> None:
    """In the child: RSS before and after the LiqMap's 7 days (the bot's modules, matplotlib included, imported
    first: /chart imports it in any running bot). Prints one JSON line."""
    import asyncio
    import gc
    import json

    import bot.app  # noqa: F401   the running bot's modules
    import bot.chart  # noqa: F401  matplotlib, as /chart has it
    from bot.config import Config
    from bot.demo_market.liquidations import force_orders
    from bot.demo_market.market import MarketSimulator
    from bot.exchange.binance import BinanceClient
    from bot.exchange.force_orders import parse_force_order
    from bot.liqmap_chart import render
    from bot.liqmap_feed import refresh, stored_view
    from bot.store import Store

    cfg = Config.model_validate({"exchange": {"weight_limit": 10**6, "data_limit_per_5m": 10**6}})
    store = Store(db)
    sim = MarketSimulator(n_symbols=30, seed=7)      # the server's market: its 7 days of prints, as if recorded
    prints = 0
    for sym in cfg.liqmap.symbols:                    # (the simulator is the bench's, not the bot's: stored first)
        prints += store.add_liq_prints([parse_force_order(e) for e in
                                        force_orders(sim, sym, sim.now_ms() - 7 * 86_400_000, sim.now_ms())])
    del sim
    bot.chart.render_chart(store, "BTCUSDT")          # a running bot that has drawn one /chart: matplotlib warm
    gc.collect()
    before = proc_status_self()

    async def fill() -> None:
        async with BinanceClient(cfg.exchange, base_url=url) as client:
            await refresh(cfg, client, store)

    asyncio.run(fill())
    pngs = 0
    for _ in range(3):
        for sym in cfg.liqmap.symbols:
            pngs += len(render(stored_view(cfg, store, sym, "1w")))
    gc.collect()
    after = proc_status_self()
    steps = sum(len(store.liq_steps(s, 0)) for s in cfg.liqmap.symbols)
    print(json.dumps({"before_kb": before["VmRSS"], "after_kb": after["VmRSS"], "peak_kb": after["VmHWM"],
                      "steps": steps, "prints": prints, "png_bytes": pngs}), flush=True)


def proc_status_self() -> dict[str, int]:
    import os
    return proc_status(os.getpid())


def liqmap_main() -> None:
    import json
    banner("memory: what two LiqMap symbols over 7 days add to the bot (target <= 20 MB)")
    with tempfile.TemporaryDirectory(prefix="bench-liqmem-") as tmpdir, \
            SimServerProcess(30, weight_limit=10**9, futures_data_limit=10**9) as srv:
        out = subprocess.run([sys.executable, __file__, "--liqmap-child", srv.url, str(Path(tmpdir) / "bot.db")],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        print(f"child failed ({out.returncode}):\n{out.stderr[-2000:]}")
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    grew = (r["after_kb"] - r["before_kb"]) / 1024
    peak = (r["peak_kb"] - r["before_kb"]) / 1024
    print(f"stored: {r['steps']} steps (7 days of 5-minute candles + OI, 2 symbols), {r['prints']} force orders; "
          f"rendered 6 maps of 1w ({r['png_bytes'] // 6 // 1024} kB each)")
    print(f"VmRSS {r['before_kb'] / 1024:.1f} MB before -> {r['after_kb'] / 1024:.1f} MB after: {grew:+.1f} MB; "
          f"peak (VmHWM) {peak:+.1f} MB above the start")
    print(f"LiqMap growth {grew:.1f} MB vs {LIQMAP_TARGET_MB:g} MB: {ratio(grew, LIQMAP_TARGET_MB)}")
    print("reproduce: python bench/memory.py --liqmap")
    result("memory", "LiqMap growth, 2 symbols x 7 days", grew, LIQMAP_TARGET_MB, "MB")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--liqmap-child"]:
        liqmap_child(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--liqmap"]:
        liqmap_main()
    else:
        main()
