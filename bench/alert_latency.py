"""End-to-end alert latency: a step the simulator injects at a random moment -> the message accepted by the loopback
Telegram fake, p50/p95 over many injections, for 1 and for 1,000 recipients (target p95 <= 75 s, one recipient,
default configuration).

The real bot (`python -m bot run`, a child process, the default config/bot.yaml with `universe.min_quote_volume: 0`
so all 600 simulated perpetuals are scored) polls the simulator server (bench/_simserver.py, its own process, 50 ms
per response) and sends through the Telegram fake (fakes/telegram_server.py, in this process; PTB's rate limiter:
30 messages/s). Recipients are watchlists with `any_symbol_above: 90`, so only the injected steps reach them.

Time is accelerated by SCALE (default 10): the bot cycles every 60/SCALE wall seconds and the simulated market runs
SCALE times faster, so each cycle is still one exchange minute apart (rules, history and cooldowns see the default
one-minute cadence; the request-weight budget is scaled with it, as `bot demo` does). What does NOT scale is the work:
a cycle's fetch, scoring, commit and the delivery take their real time. So each latency is measured in two parts
and mapped to real seconds:
  wait  = first reply carrying the step (the start of the cycle that sees it) - injection  -> x SCALE
  work  = message accepted by the Telegram fake - that first reply                         -> as measured
  real latency = wait x SCALE + work.
The step: for one symbol whose score is low, openInterest x1.5, lastFundingRate 0.4 %, markPrice = index x1.01 (score
~100 LONG), held until its alert arrived, then removed (a symbol is used once).

Run: python bench/alert_latency.py [--injections 20] [--injections-many 5] [--scale 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from _common import CONFIG_PATH, ROOT, banner, ratio, result
from _simserver import SimServerProcess

from fakes.telegram_server import TelegramSimServer

TARGET_P95_S = 75.0
TOKEN = "123456:BENCH-TOKEN-latency0000000"
SYMBOLS = 600


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def write_config(path: Path, scale: float) -> None:
    cfg = yaml.safe_load(CONFIG_PATH.read_text()) or {}
    cfg.setdefault("universe", {})["min_quote_volume"] = 0
    eng = cfg.setdefault("engine", {})
    eng["interval_minutes"] = eng.get("interval_minutes", 1) / scale
    eng["clock_skew_warn_s"] = None                      # the simulated market runs ahead on purpose
    ex = cfg.setdefault("exchange", {})
    ex["weight_limit"] = ex.get("weight_limit", 2400) * scale
    ex["data_limit_per_5m"] = ex.get("data_limit_per_5m", 1000) * scale
    cfg.setdefault("telegram", {})["poll_timeout_s"] = 1
    path.write_text(yaml.safe_dump(cfg))


def write_watchlists(folder: Path, n: int) -> list[int]:
    folder.mkdir()
    chats = [100_000 + i for i in range(n)]
    for c in chats:
        (folder / f"tg-{c}.yaml").write_text(f"name: R{c}\ntelegram_chat_id: {c}\nany_symbol_above: 90\nbands: []\n"
                                             "regimes: []\nbias_flips: false\ncooldown_minutes: 0\n")
    return chats


def latest_scores(db: Path) -> dict[str, int]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return dict(con.execute("SELECT symbol, score FROM scores WHERE ts = (SELECT MAX(ts) FROM scores)"))
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


async def run_one(recipients: int, injections: int, scale: float, rng: random.Random) -> list[dict]:
    interval = 60 / scale
    out: list[dict] = []
    with SimServerProcess(SYMBOLS, latency_ms=50, speed=scale, weight_limit=int(2400 * scale),
                          futures_data_limit=int(1000 * scale)) as srv, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tg = TelegramSimServer(TOKEN)
        root = await tg.start()
        cfg = tmp / "bot.yaml"
        write_config(cfg, scale)
        chats = write_watchlists(tmp / "watchlists", recipients)
        db = tmp / "bot.db"
        env = dict(os.environ, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=root, PYTHONUNBUFFERED="1")
        for k in ("DISCORD_BOT_TOKEN", "DISCORD_WEBHOOK_URL", "PORT"):
            env.pop(k, None)
        log = open(tmp / "bot.log", "w")
        bot = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(cfg), "run", "--db", str(db),
                                "--watchlists", str(tmp / "watchlists"), "--exchange-url", srv.url],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while len(latest_scores(db)) < SYMBOLS * 0.9:
                if time.monotonic() > deadline or bot.poll() is not None:
                    raise RuntimeError(f"the bot did not score a cycle (see {tmp / 'bot.log'})")
                await asyncio.sleep(0.5)
            used: set[str] = set()
            seen = 0
            for i in range(injections):
                scores = latest_scores(db)
                sym = rng.choice(sorted(s for s, sc in scores.items() if sc < 30 and s not in used))
                used.add(sym)
                prem = get_json(f"{srv.url}/fapi/v1/premiumIndex?symbol={sym}")
                oi = get_json(f"{srv.url}/fapi/v1/openInterest?symbol={sym}")
                await asyncio.sleep(rng.uniform(0, interval))            # a random moment within the cycle
                t_inject = time.time()
                name = f"step{i}"
                await asyncio.to_thread(srv.inject, name + "-funding", "/fapi/v1/premiumIndex", sym, "lastFundingRate",
                                        "0.00400000")
                await asyncio.to_thread(srv.inject, name + "-mark", "/fapi/v1/premiumIndex", sym, "markPrice",
                                        f"{float(prem['indexPrice']) * 1.01:.8f}")
                await asyncio.to_thread(srv.inject, name + "-oi", "/fapi/v1/openInterest", sym, "openInterest",
                                        f"{float(oi['openInterest']) * 1.5:.3f}")
                got: dict[int, float] = {}
                deadline = time.monotonic() + 20 * interval + recipients / 10
                while len(got) < recipients:
                    sent = tg.sent()
                    now = time.time()
                    for m in sent[seen:]:
                        if sym in (m.get("text") or "") and m["chat_id"] in chats:
                            got.setdefault(m["chat_id"], now)
                    seen = len(sent)
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.02)
                hits = await asyncio.to_thread(srv.injected)
                await asyncio.to_thread(srv.clear)
                t_cycle = hits.get(name + "-funding")
                if not got or t_cycle is None:
                    print(f"  injection {i + 1}: {sym}: no alert within the deadline ({len(got)}/{recipients})")
                    continue
                wait = t_cycle - t_inject
                works = sorted(t - t_cycle for t in got.values())
                out.append(dict(symbol=sym, wait=wait, works=works, delivered=len(got)))
                real = [wait * scale + w for w in works]
                print(f"  injection {i + 1}: {sym}: waited {wait:.2f}s for a cycle (x{scale:g} = {wait * scale:.0f}s), "
                      f"then {works[0]:.2f}s to the first message, {works[-1]:.2f}s to the last; "
                      f"{len(got)}/{recipients} delivered; real latency {min(real):.1f}..{max(real):.1f}s", flush=True)
        finally:
            bot.terminate()
            try:
                bot.wait(timeout=20)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait()
            log.close()
            await tg.stop()
    return out


def summarise(recipients: int, runs: list[dict], scale: float) -> None:
    if not runs:
        print(f"{recipients} recipient(s): no injection delivered")
        return
    every = [r["wait"] * scale + w for r in runs for w in r["works"]]          # each (injection, recipient)
    last = [r["wait"] * scale + r["works"][-1] for r in runs]                  # the last recipient of each
    work = [w for r in runs for w in r["works"]]
    p50, p95 = statistics.median(every), pct(every, 0.95)
    print(f"{recipients} recipient(s), {len(runs)} injections: real-time latency p50 {p50:.1f}s, p95 {p95:.1f}s "
          f"(per recipient); the last recipient of each injection p50 {statistics.median(last):.1f}s, "
          f"p95 {pct(last, 0.95):.1f}s; unscaled work (fetch, score, commit, deliver) p50 {statistics.median(work):.2f}s,"
          f" p95 {pct(work, 0.95):.2f}s" + (f" -> {ratio(p95, TARGET_P95_S)}" if recipients == 1 else ""))
    result("alert", f"e2e alert latency p50 @{recipients} recipient(s)", p50, 0, "s")
    result("alert", f"e2e alert latency p95 @{recipients} recipient(s)", p95, TARGET_P95_S if recipients == 1 else 0, "s")


async def main_async(injections: int, injections_many: int, scale: float, seed: int) -> None:
    banner("alert latency: injected market step -> Telegram fake, real seconds (time x"
           f"{scale:g}, mapped back as the docstring says)")
    rng = random.Random(seed)
    for recipients, n in ((1, injections), (1000, injections_many)):
        if n <= 0:
            continue
        print(f"-- {recipients} recipient(s), {n} injections")
        summarise(recipients, await run_one(recipients, n, scale, rng), scale)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--injections", type=int, default=20, help="injections with one recipient")
    p.add_argument("--injections-many", type=int, default=5, help="injections with 1,000 recipients")
    p.add_argument("--scale", type=float, default=10.0, help="time acceleration (cycles every 60/scale s)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    asyncio.run(main_async(a.injections, a.injections_many, a.scale, a.seed))


if __name__ == "__main__":
    main()
