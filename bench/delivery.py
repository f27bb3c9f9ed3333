"""Delivery at scale: N hosted delivery workers (`python -m bot run --role delivery`, separate processes, one
PostgreSQL database) against the loopback Telegram fake enforcing Telegram's flood limits (30 messages a second
per bot, 1 per chat; 429 with retry_after beyond). 10 000 users each have one alert waiting in the outbox.

The figure: the achieved rate (messages/s between the first and the last delivery, from the rows' `sent` times)
as a share of the allowed rate (target >= 95 %); and the checks: every user got exactly one message (none lost,
none repeated), no row failed, and how many 429s the fake answered (each one handled: the row retried).

Time can be scaled: `--scale K` multiplies the bot's allowed rate (fake and workers alike) by K, so 10 000
messages take 333/K s instead of 333 s; the per-chat limit stays 1/s (each user gets one message).

Run: python bench/delivery.py [--users 10000] [--workers 3] [--scale 1] [--postgres-url URL]
(without --postgres-url a throwaway PostgreSQL cluster is started on loopback: Debian's postgresql package)
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from _common import ROOT, banner, result

sys.path.insert(0, str(ROOT / "tests"))
import pgcluster  # noqa: E402  (tests/pgcluster.py: the throwaway cluster)

from bot.store import Store  # noqa: E402

TOKEN = "123456:BENCH"
TARGET_SHARE = 0.95


def queue(store: Store, users: int) -> None:
    now = int(time.time() * 1000)             # due now
    receipt = {"rule": "cross:35", "kind": "threshold", "threshold": 35, "prev_score": 30, "score": 40,
               "band": "stretched", "bias": "LONG", "regime": "r", "reason": "r", "contributions": {},
               "inputs": {"funding_rate": 0.0005, "oi_change_1h": 0.01}, "raw": None}
    signals = [dict(id=f"SIG{i:05d}", ts=now, symbol=f"C{i}USDT", rule="cross:35", kind="threshold", score=40,
                    bias="LONG", regime="r", receipt=receipt) for i in range(20)]
    rows = [dict(key=f"bench:{u}", recipient=f"tg-{100_000 + u}", channel="telegram", address=str(100_000 + u),
                 created=now, due=now, signal_ids=[signals[u % 20]["id"]]) for u in range(users)]
    store.commit_alert_cycle({"ts": now, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                             signals, [], rows)


def sim(root: str, action: str) -> object:
    with urllib.request.urlopen(f"{root}/sim/{action}", timeout=60) as r:
        return json.load(r)["result"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the bot's allowed rate (time scaled by 1/K)")
    p.add_argument("--postgres-url", default=os.environ.get("BOT_TEST_POSTGRES_URL"))
    a = p.parse_args()
    bot_rate = 30 * a.scale
    banner(f"delivery: {a.users} users x 1 alert, {a.workers} delivery worker processes, Telegram fake at "
           f"{bot_rate:g} msg/s per bot and 1 msg/s per chat (scale x{a.scale:g})")

    cluster = None
    admin = a.postgres_url
    if not admin:
        cluster = pgcluster.start()
        admin = cluster.url
    import psycopg
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    procs: list[subprocess.Popen] = []
    try:
        fake = subprocess.Popen([sys.executable, "-m", "fakes.telegram_server", "--port", "0", "--token", TOKEN,
                                 "--quiet", "--bot-rate", str(bot_rate), "--chat-rate", "1"],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(fake)
        root = fake.stdout.readline().strip()
        store = Store(url)
        t = time.perf_counter()
        queue(store, a.users)
        print(f"queued {a.users} outbox rows in {time.perf_counter() - t:.1f}s", flush=True)

        cfg = tmp / "bot.yaml"
        cfg.write_text(f"telegram: {{bot_messages_per_s: {bot_rate}}}\n")
        env = dict(os.environ, DATABASE_URL=url, BOT_SIGNING_KEY="33" * 32, TELEGRAM_BOT_TOKEN=TOKEN,
                   TELEGRAM_API_BASE_URL=root, BOT_LOG_LEVEL="WARNING")
        for k in ("DISCORD_BOT_TOKEN", "PORT", "BOT_DB_PATH"):
            env.pop(k, None)
        started = time.perf_counter()
        for i in range(a.workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "bot", "--config", str(cfg), "run", "--role",
                                           "delivery"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=open(tmp / f"worker{i}.log", "w")))
        deadline = time.monotonic() + a.users / bot_rate * 3 + 120
        counts: dict = {}
        while time.monotonic() < deadline:
            counts = store.outbox_counts()
            if counts.get("sent", 0) + counts.get("failed", 0) >= a.users:
                break
            time.sleep(1.0)
        wall = time.perf_counter() - started
        rows = store.outbox_rows()
        sent_ms = sorted(r["sent"] for r in rows if r["status"] == "sent")
        store.close()

        stats = sim(root, "stats")
        per_chat = collections.Counter(m["chat_id"] for m in sim(root, "sent"))
        lost = [u for u in range(a.users) if per_chat.get(100_000 + u, 0) == 0]
        repeated = {c: n for c, n in per_chat.items() if n > 1}
        failed = counts.get("failed", 0)
        span_s = (sent_ms[-1] - sent_ms[0]) / 1000 if len(sent_ms) > 1 else float("nan")
        achieved = (len(sent_ms) - 1) / span_s if len(sent_ms) > 1 else 0.0
        share = achieved / bot_rate
        print(f"delivered {len(sent_ms)}/{a.users} rows in {wall:.1f}s wall (workers' start-up included); "
              f"first to last delivery {span_s:.1f}s")
        print(f"achieved {achieved:.2f} msg/s of {bot_rate:g} allowed = {share:.1%} (target >= {TARGET_SHARE:.0%})")
        print(f"users with no message: {len(lost)}; with more than one: {len(repeated)}; rows failed: {failed}; "
              f"429s answered by the fake (each retried by the outbox): {stats['flood_refusals']}")
        attempts = collections.Counter(r["attempts"] for r in rows)
        print(f"claims per row: {dict(sorted(attempts.items()))}")
        ok = not lost and not repeated and not failed
        print("CHECK " + ("ok: every user exactly one message, no failed row" if ok else "FAILED"))
        print(f"reproduce: python bench/delivery.py --users {a.users} --workers {a.workers} --scale {a.scale:g}")
        result("delivery", f"allowed/achieved rate, {a.workers} workers", bot_rate / achieved if achieved else 99.0,
               1 / TARGET_SHARE, "x")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
