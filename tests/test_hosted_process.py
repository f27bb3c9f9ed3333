"""Hosted roles as real processes on one PostgreSQL database, against the Binance simulator and the Telegram fake:
an engine, a standby engine and two delivery workers; the engine and a delivery worker are SIGKILLed mid-run.
Every alert reaches its chat exactly once, and the standby engine is in charge within the stated bound. Then a
process started in an empty folder with only DATABASE_URL finds every watchlist, signal and pending alert."""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for

from bot.roles import GATE_POLL_S, TAKEOVER_BOUND_S

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TOKEN = "123456:HOSTED-TEST"
CHATS = [1001, 1002, 1003, 1004, 1005, 1006]

pytestmark = pytest.mark.process


@pytest.fixture
def market(sim_start_ms):
    proc = subprocess.Popen([PY, "-m", "bot.demo_market.binance_server", "--port", "0", "--symbols", "150", "--seed",
                             "11", "--start-ms", str(sim_start_ms), "--speed", "600", "--weight-limit", "1000000",
                             "--futures-data-limit", "100000"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def telegram():
    proc = subprocess.Popen([PY, "-m", "fakes.telegram_server", "--port", "0", "--token", TOKEN, "--quiet"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    root = proc.stdout.readline().strip()
    assert root.startswith("http://127.0.0.1:")
    yield root
    proc.terminate()
    proc.wait(10)


def sent_to(root: str, chat: int) -> list[str]:
    with urllib.request.urlopen(f"{root}/sim/sent?chat_id={chat}", timeout=10) as r:
        return [m.get("text") or "" for m in json.load(r)["result"]]


class Hosted:
    def __init__(self, tmp: Path, url: str, market: str, telegram: str):
        self.tmp, self.url, self.market = tmp, url, market
        self.env = dict(os.environ, BOT_LOG_LEVEL="INFO", DATABASE_URL=url, BOT_SIGNING_KEY="22" * 32,
                        TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=telegram)
        for k in ("DISCORD_BOT_TOKEN", "BOT_DB_PATH", "PORT"):
            self.env.pop(k, None)
        self.cfg = tmp / "bot.yaml"
        self.cfg.write_text("engine: {interval_minutes: 0.02}\n"             # a cycle every 1.2 s
                            "exchange: {weight_limit: 1000000, data_limit_per_5m: 100000}\n"
                            "universe: {min_quote_volume: 0}\n"
                            "storage: {outbox_lease_s: 4}\n"               # a dead worker's rows pass on after 4 s
                            "telegram: {bot_messages_per_s: 4}\n")         # slow sends: workers hold claims a while

    def start(self, name: str, role: str, cwd: Path | None = None) -> subprocess.Popen:
        cwd = cwd or self.tmp
        cfg = Path(self.cfg if cwd == self.tmp else (cwd / "bot.yaml"))
        if not cfg.exists():
            cfg.write_text(self.cfg.read_text())
        return subprocess.Popen([PY, "-m", "bot", "--config", str(cfg), "run", "--exchange-url", self.market,
                                 "--role", role], cwd=cwd, env=dict(self.env, PYTHONPATH=str(ROOT)),
                                stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"{name}.log", "a"))

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def sql(self, query: str) -> list[tuple]:
        import psycopg
        with psycopg.connect(self.url) as c:
            try:
                return c.execute(query).fetchall()
            except psycopg.errors.UndefinedTable:
                return []

    def cycles(self) -> int:
        rows = self.sql("SELECT count(*) FROM cycles")
        return rows[0][0] if rows else 0

    def outbox(self) -> list[tuple[str, str, str, list[str]]]:
        return [(k, s, a, json.loads(ids)) for k, s, a, ids in
                self.sql("SELECT key, status, address, signal_ids FROM outbox")]


def exactly_once(h: Hosted, telegram: str) -> int:
    """Every outbox row sent, and each chat received each of its signals exactly once."""
    rows = h.outbox()
    assert rows and {s for _, s, _, _ in rows} == {"sent"}
    expected = collections.defaultdict(collections.Counter)
    for _, _, address, ids in rows:
        expected[int(address)].update(ids)
    for chat in CHATS:
        got = collections.Counter(i for text in sent_to(telegram, chat) for i in re.findall(r"· signal (\w+)", text))
        assert got == expected[chat], f"chat {chat}: delivered {got - expected[chat]} too often, " \
                                      f"missing {expected[chat] - got}"
    return len(rows)


def in_the_window(h: Hosted, telegram: str) -> bool:
    """Did the fake accept a message whose row is not yet recorded as sent? That is the documented window
    (docs/reliability.md, bot/outbox.py): a worker killed right there has its part sent once more."""
    unsent = collections.defaultdict(set)
    for _, status, address, ids in h.outbox():
        if status != "sent":
            unsent[int(address)].update(ids)
    return any(i in unsent[chat] for chat in list(unsent)
               for text in sent_to(telegram, chat) for i in re.findall(r"· signal (\w+)", text))


def claims_of(h: Hosted, worker: subprocess.Popen) -> list[str]:
    """Keys of the rows `worker` has claimed and not finished (its lease)."""
    return [k for (k,) in h.sql(f"SELECT key FROM outbox WHERE status = 'sending' AND worker LIKE '%:{worker.pid}'")]


def kill_outside_the_window(h: Hosted, telegram: str, worker: subprocess.Popen) -> list[str]:
    """SIGKILL a delivery worker mid-run, but not inside the one window where no sender can do better (the platform
    accepted a part, the worker died before recording it): freeze it (SIGSTOP), look, and kill it only when it
    holds no accepted-but-unrecorded part (else let it run on a moment and look again). It may hold claimed rows
    (leases) and requests in flight, which is the point."""
    for _ in range(200):
        worker.send_signal(signal.SIGSTOP)
        time.sleep(0.2)                    # a request already on the wire reaches the fake (and counts) first
        held = claims_of(h, worker)
        if held and not in_the_window(h, telegram):
            worker.send_signal(signal.SIGKILL)
            worker.send_signal(signal.SIGCONT)
            return held
        worker.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("never found the worker holding claims outside the accepted-but-unrecorded window")


def test_engine_and_a_delivery_worker_killed_mid_run_every_alert_once_standby_takes_over(
        market, telegram, postgres_url, tmp_path):
    h = Hosted(tmp_path, postgres_url, market, telegram)
    wl = tmp_path / "wl"
    wl.mkdir()
    for chat in CHATS:
        (wl / f"tg-{chat}.yaml").write_text(f"# chat {chat}\nname: Trader {chat}\ntelegram_chat_id: {chat}\n"
                                            "any_symbol_above: 20\nbands: [lean, stretched, stressed]\n"
                                            "cooldown_minutes: 0\n")
    imported = subprocess.run([PY, "-m", "bot", "watchlists", "import", str(wl)], cwd=ROOT, env=h.env,
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0 and f"{len(CHATS)} watchlist(s) copied" in imported.stdout, imported.stderr

    procs = {"engine": h.start("engine", "engine")}
    try:
        wait_for(lambda: h.cycles() >= 1, 90, "a cycle of the first engine")
        procs["standby"] = h.start("standby", "engine")
        procs["d1"] = h.start("d1", "delivery")
        procs["d2"] = h.start("d2", "delivery")
        wait_for(lambda: "another process is in charge" in h.log("standby"), 60, "the standby engine standing by")
        wait_for(lambda: sum(s == "sent" for _, s, _, _ in h.outbox()) >= 6, 90, "alerts delivered by the workers")
        assert "delivered recipient=" in h.log("d1") + h.log("d2")

        orphaned = kill_outside_the_window(h, telegram, procs["d1"])   # a delivery worker dies holding claims ...
        procs["engine"].send_signal(signal.SIGKILL)        # ... and so does the engine
        killed = time.monotonic()
        procs["d1"].wait(10)
        procs["engine"].wait(10)
        wait_for(lambda: "engine: this process is now in charge" in h.log("standby"), TAKEOVER_BOUND_S + 5,
                 "the standby engine taking over")
        took = time.monotonic() - killed
        assert took <= GATE_POLL_S + 3, f"the standby took {took:.1f}s (a killed holder's lock is freed at once)"
        before = h.cycles()
        wait_for(lambda: h.cycles() >= before + 3, 90, "three cycles of the new engine")
        procs["standby"].send_signal(signal.SIGTERM)       # no new alerts; the rest is delivered
        assert procs["standby"].wait(20) == 0
        wait_for(lambda: len(h.outbox()) >= 12 and {s for _, s, _, _ in h.outbox()} == {"sent"}, 120,
                 "every alert delivered (the dead worker's rows after their lease)")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(20)
    assert exactly_once(h, telegram) >= 12
    retaken = h.sql("SELECT key, attempts, worker FROM outbox WHERE key IN ({})".format(
        ", ".join(f"'{k}'" for k in orphaned)))
    assert retaken and all(a >= 2 and not w.endswith(f":{procs['d1'].pid}") for _, a, w in retaken), retaken
    assert "backfilling" not in h.log("standby")        # the history the first engine stored serves the second

    # ---- restart with an empty filesystem: the same DATABASE_URL is all a new process has
    pending_before = h.cycles()
    engine_only = h.start("engine2", "engine")            # alerts pile up with no delivery running ...
    wait_for(lambda: h.cycles() >= pending_before + 2 and any(s == "pending" for _, s, _, _ in h.outbox()), 90,
             "new alerts waiting in the outbox")
    engine_only.send_signal(signal.SIGKILL)
    engine_only.wait(10)
    pending = [k for k, s, _, _ in h.outbox() if s == "pending"]
    signals = h.sql("SELECT count(*) FROM signals")[0][0]
    empty = tmp_path / "fresh"
    empty.mkdir()
    fresh = h.start("fresh", "all", cwd=empty)
    try:
        wait_for(lambda: {s for _, s, _, _ in h.outbox()} == {"sent"} and h.cycles() > pending_before + 2, 120,
                 "the pending alerts delivered by the fresh process")
    finally:
        fresh.send_signal(signal.SIGTERM)
        assert fresh.wait(20) == 0
    log = h.log("fresh")
    assert "backfilling" not in log
    assert not (empty / "config").exists() and not (empty / "data").exists()     # nothing kept on its disk
    assert h.sql("SELECT count(*) FROM signals")[0][0] >= signals
    assert len(h.sql("SELECT user_id FROM watchlists")) == len(CHATS)
    assert pending and all(h.sql(f"SELECT status FROM outbox WHERE key = '{k}'")[0][0] == "sent" for k in pending)
    exactly_once(h, telegram)


def push(root: str, chat: int, text: str) -> None:
    req = urllib.request.Request(f"{root}/sim/push_message", data=json.dumps({"chat_id": chat, "text": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def test_exactly_one_chat_process_polls_telegram_and_another_takes_over(market, telegram, postgres_url, tmp_path):
    """Two `--role chat` processes on one bot token: one polls (Telegram would answer the second getUpdates with
    409 Conflict); SIGKILL it and the other polls within the bound and answers the next command."""
    h = Hosted(tmp_path, postgres_url, market, telegram)
    a = h.start("chat-a", "chat")
    procs = [a]
    try:
        wait_for(lambda: "telegram: polling" in h.log("chat-a"), 60, "the first chat process polling")
        b = h.start("chat-b", "chat")
        procs.append(b)
        wait_for(lambda: "another process is in charge" in h.log("chat-b"), 60, "the second standing by")
        assert "telegram: sending only" in h.log("chat-b") and "telegram: polling" not in h.log("chat-b")
        push(telegram, 1001, "/start")
        wait_for(lambda: any("Welcome" in t for t in sent_to(telegram, 1001)), 30, "the answer to /start")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed = time.monotonic()
        wait_for(lambda: "telegram: polling" in h.log("chat-b"), TAKEOVER_BOUND_S + 5, "the second polling")
        assert time.monotonic() - killed <= GATE_POLL_S + 3
        push(telegram, 1002, "/start")
        wait_for(lambda: any("Welcome" in t for t in sent_to(telegram, 1002)), 30, "the answer after the takeover")
        assert h.sql("SELECT user_id FROM watchlists ORDER BY user_id") == [("tg-1001",), ("tg-1002",)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
    assert "Conflict" not in h.log("chat-a") + h.log("chat-b")


def test_sqlite_refuses_roles_apart_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BOT_DB_PATH")}
    out = subprocess.run([PY, "-m", "bot", "run", "--role", "delivery", "--db", str(tmp_path / "bot.db")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "--role delivery: " in out.stderr and "is a SQLite database, which serves one process" in out.stderr
