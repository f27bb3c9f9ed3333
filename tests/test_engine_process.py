"""The engine as a real process: SIGKILL at random points never loses or repeats an alert; SIGTERM
stops within 10 s; a warm start does not backfill again; the offline demo shows alerts in 30 s."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


pytestmark = pytest.mark.process


@pytest.fixture
def market(sim_start_ms):
    """The Binance-shaped simulator in its own process, fast-forwarded so scores keep moving; seed and
    start pinned, so the market is the same on every run."""
    proc = subprocess.Popen([PY, "-m", "bot.demo_market.binance_server", "--port", "0", "--symbols", "150", "--seed", "11",
                             "--start-ms", str(sim_start_ms), "--speed", "600", "--weight-limit", "1000000",
                             "--futures-data-limit", "100000"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:")
    yield url
    proc.terminate()
    proc.wait(10)


def write_setup(tmp: Path) -> tuple[Path, Path]:
    cfg = tmp / "bot.yaml"
    cfg.write_text("engine: {interval_minutes: 0.02}\n"             # a cycle every 1.2 s
                   "exchange: {weight_limit: 1000000, data_limit_per_5m: 100000}\n"
                   "universe: {min_quote_volume: 0}\n")
    wl = tmp / "watchlists"
    wl.mkdir()
    (wl / "trader.yaml").write_text("name: Trader\nany_symbol_above: 20\nbands: [lean, stretched, stressed]\n"
                                    "cooldown_minutes: 0\n")
    return cfg, wl


def start_bot(url: str, tmp: Path, cfg: Path, wl: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, BOT_LOG_LEVEL="INFO")
    return subprocess.Popen([PY, "-m", "bot", "--config", str(cfg), "run", "--exchange-url", url,
                             "--db", str(tmp / "bot.db"), "--watchlists", str(wl),
                             "--alert-log", str(tmp / "alerts.jsonl"), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "bot.log", "a"))


def db_rows(tmp: Path, sql: str) -> list[tuple]:
    if not (tmp / "bot.db").exists():
        return []
    db = sqlite3.connect(tmp / "bot.db", timeout=10)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:      # no tables yet: the bot has not created its schema
        return []
    finally:
        db.close()


def outbox(tmp: Path) -> list[tuple[str, str]]:
    return db_rows(tmp, "SELECT key, status FROM outbox")


def cycles(tmp: Path) -> int:
    rows = db_rows(tmp, "SELECT COUNT(*) FROM cycles")
    return rows[0][0] if rows else 0


def delivered_keys(tmp: Path) -> list[str]:
    keys = []
    path = tmp / "alerts.jsonl"
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            keys += json.loads(line)["keys"]
        except ValueError:
            pass          # a torn line from a kill mid-write; the sink cuts it on restart
    return keys


def log_text(tmp: Path) -> str:
    return (tmp / "bot.log").read_text()


def test_sigkill_at_random_points_delivers_every_alert_exactly_once(market, tmp_path):
    cfg, wl = write_setup(tmp_path)
    rng = random.Random(1234)
    for _ in range(7):
        before = cycles(tmp_path)
        bot = start_bot(market, tmp_path, cfg, wl)
        # Let the run get going (a cycle of its own committed), then kill it at a random moment of the
        # next ones: fetch, scoring, commit, sending, marking. Waiting for progress, not for a fixed
        # time, keeps the kills meaningful on a loaded machine.
        wait_for(lambda: cycles(tmp_path) > before, 60, "a cycle committed by this run")
        time.sleep(rng.uniform(0.0, 2.5))
        bot.send_signal(signal.SIGKILL)
        bot.wait(10)
    bot = start_bot(market, tmp_path, cfg, wl)      # a last clean run delivers what is pending, then stops
    before = cycles(tmp_path)
    # It runs until enough alerts exist to prove something (a loaded machine runs fewer cycles between
    # the kills) and every queued alert is delivered.
    wait_for(lambda: cycles(tmp_path) > before + 1 and len(outbox(tmp_path)) >= 8
             and {s for _, s in outbox(tmp_path)} == {"sent"}, 120,
             "two more cycles, at least 8 alerts queued, and every queued alert delivered")
    bot.send_signal(signal.SIGTERM)
    assert bot.wait(15) == 0

    rows = outbox(tmp_path)
    keys = delivered_keys(tmp_path)
    assert len(rows) >= 8, "the run produced too few alerts to prove anything"
    assert sorted(keys) == sorted(k for k, _ in rows), "every queued alert delivered, none twice"
    assert {s for _, s in rows} == {"sent"}


def test_sigterm_stops_within_10s_and_warm_start_does_not_backfill(market, tmp_path):
    cfg, wl = write_setup(tmp_path)
    bot = start_bot(market, tmp_path, cfg, wl)
    wait_for(lambda: cycles(tmp_path) >= 2, 60, "two cycles committed")
    t = time.monotonic()
    bot.send_signal(signal.SIGTERM)
    assert bot.wait(15) == 0
    assert time.monotonic() - t < 10
    log = log_text(tmp_path)
    assert re.search(r"backfilling \d+ symbols", log) and "stopped" in log

    (tmp_path / "bot.log").write_text("")
    bot = start_bot(market, tmp_path, cfg, wl)
    wait_for(lambda: "cycle ts=" in log_text(tmp_path), 60, "a cycle of the warm start")
    bot.send_signal(signal.SIGTERM)
    assert bot.wait(15) == 0
    log = log_text(tmp_path)
    assert "backfilling" not in log, "warm start resumed from SQLite"
    assert "stopped" in log


def test_offline_demo_shows_crossings_and_a_squeeze_within_30s(tmp_path, sim_start_ms):
    t = time.monotonic()
    start = datetime.fromtimestamp(sim_start_ms / 1000, timezone.utc).isoformat()
    out = subprocess.run([PY, "-m", "bot", "demo", "--seconds", "30", "--start", start,
                          "--alert-log", str(tmp_path / "a.jsonl"), "--db", str(tmp_path / "demo.db")],
                         cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    assert time.monotonic() - t < 45
    text = out.stdout
    assert "symbols ranked" in text                        # the ranked table
    assert "crossed 60" in text or "crossed 35" in text     # threshold crossings
    delivered = [i for line in (tmp_path / "a.jsonl").read_text().splitlines() for i in json.loads(line)["signals"]]
    db = sqlite3.connect(tmp_path / "demo.db")
    rules = [db.execute("SELECT rule FROM signals WHERE id=?", (i,)).fetchone()[0] for i in delivered]
    assert any(r.startswith("cross:") for r in rules)
    assert any(r.startswith("regime:") and "squeeze" in r for r in rules), rules   # a squeeze-risk alert


def test_a_second_run_on_the_same_database_exits_and_the_first_keeps_going(market, tmp_path):
    """An overlapping deploy: the second `run` on one database does not poll or send; it says who holds the
    database and exits (EX_TEMPFAIL, 75) while the first keeps cycling, and with `cooldown_minutes: 0` no alert
    is delivered twice."""
    cfg, wl = write_setup(tmp_path)                 # trader.yaml: cooldown_minutes: 0, alerts on almost anything
    first = start_bot(market, tmp_path, cfg, wl)
    try:
        wait_for(lambda: cycles(tmp_path) >= 1, 60, "a cycle of the first run")
        t = time.monotonic()
        second = subprocess.run([PY, "-m", "bot", "--config", str(cfg), "run", "--exchange-url", market,
                                 "--db", str(tmp_path / "bot.db"), "--watchlists", str(wl),
                                 "--alert-log", str(tmp_path / "alerts.jsonl")],
                                cwd=ROOT, env=dict(os.environ, BOT_LOG_LEVEL="INFO"), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 75, second.stderr[-2000:]
        assert time.monotonic() - t < 20, "the second run exits promptly (no backfill, no cycle)"
        assert (f"error: another bot is already running on {tmp_path / 'bot.db'} (pid {first.pid}); "
                "not starting a second engine") in second.stderr
        assert "cycle ts=" not in second.stderr and "backfilling" not in second.stderr
        assert first.poll() is None, "the first run keeps going"

        before = cycles(tmp_path)
        wait_for(lambda: cycles(tmp_path) >= before + 2 and len(outbox(tmp_path)) >= 4
                 and {s for _, s in outbox(tmp_path)} == {"sent"}, 120,
                 "two more cycles of the first run, at least 4 alerts, all delivered")
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0

    keys = delivered_keys(tmp_path)
    assert keys and len(keys) == len(set(keys)) and sorted(keys) == sorted(k for k, _ in outbox(tmp_path))
    delivered = [i for line in (tmp_path / "alerts.jsonl").read_text().splitlines() for i in json.loads(line)["signals"]]
    assert len(delivered) == len(set(delivered))
    twice = db_rows(tmp_path, "SELECT ts, symbol, rule, COUNT(*) FROM signals GROUP BY ts, symbol, rule HAVING COUNT(*) > 1")
    assert twice == [], "one engine: every event becomes one alert"
