"""Operational faults (docs/reliability.md, "Operations"): a chat platform unreachable at start-up or later, the
console's alert log on a full disk, a local clock far from the exchange's, and the database file deleted, replaced
or unwritable while the bot runs.

The bot runs as `run_bot` runs it (the app's supervisors, delivery worker and scheduler) with a scripted market
source (`run_bot(source=...)`: fixed score inputs, exchange time 5 minutes a cycle), the loopback Telegram fake
(fakes/telegram_server.py) and the loopback Discord fake's webhooks. Waits poll with deadlines; the clocks that
decide are injected.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot import app as app_mod
from bot.adapters.console import ConsoleSender
from bot.app import hourly_housekeeping
from bot.clock import FakeClock
from bot.config import Config
from bot.cycle import CycleOutcome
from bot.engine import Engine
from bot.market import CycleData
from bot.outbox import DeliveryWorker
from bot.records import OIPoint
from bot.score import ScoreInputs, score_all
from bot.store import Store, StoreUnavailable
from fakes.discord_server import DiscordSimServer
from fakes.telegram_server import TelegramSimServer

TOKEN = "123456:TEST-TOKEN-0pfau1ts"
CHAT = 1001
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
CALM = [ScoreInputs(s, 0.0001, 8, 0.001, 0.002, 0.005, 0.0001, 0.001, 0.002) for s in SYMBOLS]
HOT = [  # BTC 75 LONG · ETH 44 LONG · SOL 63 SHORT · DOGE 86 SHORT (as in tests/test_discord.py)
    ScoreInputs("BTCUSDT", 0.0012, 8, 0.03, -0.03375, 0.15, 0.004, 0.015, 0.05),
    ScoreInputs("ETHUSDT", 0.0003, 8, 0.0075, 0.0, 0.06, 0.002, 0.01, 0.03),
    ScoreInputs("SOLUSDT", -0.0008, 8, -0.025, -0.06, 0.05, -0.003, -0.01, -0.05),
    ScoreInputs("DOGEUSDT", -0.0015, 8, -0.04, -0.08, -0.075, -0.005, -0.02, -0.08),
]
T0 = 1_795_046_400_000          # 2026-11-18T00:00Z: the exchange's time at the first cycle
MIN, HOUR = 60_000, 3_600_000


class Script:
    """The engine's market source: `plan[i]` (repeated) scored as cycle i, `step_ms` of exchange time apart, each
    cycle's OI appended to the store's history as the real collector does."""

    def __init__(self, cfg: Config, store: Store, plan: list[list[ScoreInputs]], step_ms: int = 5 * MIN):
        self.cfg, self.store, self.plan, self.step_ms = cfg, store, plan, step_ms
        self.ts, self.calls = T0 - step_ms, 0
        self.before_return = None        # a hook run inside a cycle, after the fetch

    async def next_cycle(self) -> CycleOutcome:
        inputs = self.plan[self.calls % len(self.plan)]
        self.calls += 1
        self.ts += self.step_ms
        self.store.add_oi_points([OIPoint(i.symbol, self.ts, 1000.0, 1.0) for i in inputs])
        if self.before_return is not None:
            self.before_return()
        return CycleOutcome(self.ts, score_all(inputs, self.cfg.score), CycleData(self.ts, inputs, {}), 0.1, 0, 0, 0)


async def until(check, timeout: float, what: str, interval: float = 0.05):
    """`conftest.wait_for` for coroutines: poll without blocking the loop the bot runs in; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def messages(caplog, pattern: str) -> list[re.Match]:
    return [m for r in caplog.records if (m := re.search(pattern, r.getMessage()))]


def signal_counts(texts: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in texts:
        for sid in re.findall(r"signal ([A-Z2-7]{8})", t):
            counts[sid] = counts.get(sid, 0) + 1
    return counts


# ==================================================================================== the database file
@pytest.fixture
def engine_on_file(make_services):
    svc = make_services(universe=SYMBOLS)
    svc.watchlists.directory.mkdir(exist_ok=True)
    (svc.watchlists.directory / "desk.yaml").write_text("name: Desk\nany_symbol_above: 20\ncooldown_minutes: 0\n")
    svc.watchlists.load_all()
    script = Script(svc.cfg, svc.store, [CALM, HOT])
    return svc, script, Engine(svc.cfg, svc.store, None, svc.recipients, source=script)


def committed_cycles(svc) -> int:
    return len(svc.store._db.execute("SELECT ts FROM cycles").fetchall())


@pytest.mark.parametrize("fault", ["deleted", "replaced", "deleted during the cycle"])
async def test_a_vanished_database_file_stops_the_cycles_with_an_error_each_time(engine_on_file, caplog, fault):
    svc, script, engine = engine_on_file
    await engine.scheduled_cycle()
    assert committed_cycles(svc) == 1
    path = Path(svc.store.file)
    if fault == "deleted":
        path.unlink()
    elif fault == "replaced":                        # e.g. a backup restored over the live file
        shutil.copy(path, path.with_suffix(".bak"))
        os.replace(path.with_suffix(".bak"), path)
    else:
        script.before_return = path.unlink           # gone after the fetch, before the commit
    for _ in range(3):
        await engine.scheduled_cycle()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "cycle skipped" in r.getMessage()]
    assert len(errors) == 3
    assert ("was replaced" if fault == "replaced" else "was deleted") in errors[0].getMessage()
    assert "commits nothing until the bot is restarted" in errors[0].getMessage()
    assert committed_cycles(svc) == 1                # nothing more written to the vanished file
    assert script.calls == (2 if fault == "deleted during the cycle" else 1)   # no polling once it is known
    with pytest.raises(StoreUnavailable):
        svc.store.check_file()
    pruned = len(svc.store.oi_points_between(0, 2**62))
    hourly_housekeeping(svc)                          # skipped: nothing written there would survive
    assert len(svc.store.oi_points_between(0, 2**62)) == pruned


async def test_a_database_that_refuses_writes_fails_each_cycle_in_one_line_and_recovers(engine_on_file, caplog):
    """A read-only file system or a full disk: SQLite refuses the commit (simulated with `PRAGMA query_only`, the
    error SQLite gives on a read-only remount). Each cycle says so in one ERROR line, commits nothing, and the
    rule state does not advance; once writes work again the next cycle commits."""
    svc, script, engine = engine_on_file
    await engine.scheduled_cycle()
    svc.store._db.execute("PRAGMA query_only = 1")
    for _ in range(2):
        await engine.scheduled_cycle()
    lines = messages(caplog, r"cycle failed: the database could not be written \((\w+): (.+)\); nothing from this "
                             "cycle was committed")
    assert len(lines) == 2 and "readonly" in lines[0][2]
    assert committed_cycles(svc) == 1 and "Traceback" not in caplog.text
    svc.store._db.execute("PRAGMA query_only = 0")
    await engine.scheduled_cycle()
    assert committed_cycles(svc) == 2


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through any permission")
async def test_an_unwritable_database_file_is_reported_each_cycle(engine_on_file, caplog):
    svc, script, engine = engine_on_file
    await engine.scheduled_cycle()
    os.chmod(svc.store.file, 0o444)
    try:
        await engine.scheduled_cycle()
        await engine.scheduled_cycle()
    finally:
        os.chmod(svc.store.file, 0o644)
    assert len(messages(caplog, "database: .* is no longer writable for this process")) == 2
    assert committed_cycles(svc) == 3                # this run still writes through its open connection
