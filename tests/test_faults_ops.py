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
from conftest import until

from bot import app as app_mod
from bot.adapters.base import AdapterRefused
from bot.adapters.console import ConsoleSender
from bot.app import AdapterSupervisor, enable_chat_adapters, hourly_housekeeping
from bot.clock import FakeClock, SystemClock
from bot.config import Config
from bot.cycle import CycleOutcome
from bot.engine import Engine
from bot.market import CycleData
from bot.outbox import DeliveryWorker
from bot.records import OIPoint
from bot.score import ScoreInputs, score_all
from bot.store import Store, StoreClosed, StoreUnavailable
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
RETRY = (0.02, 0.16)            # the adapters' retry schedule here (first delay, cap): short, as real time passes


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


# ==================================================================================== adapters fail alone
@pytest.fixture
def chat_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    for k in ("DISCORD_BOT_TOKEN", "DISCORD_API_BASE_URL", "DISCORD_GATEWAY_URL"):
        monkeypatch.delenv(k, raising=False)
    wl = tmp_path / "watchlists"
    wl.mkdir()
    (wl / f"tg-{CHAT}.yaml").write_text(f"name: Trader\ntelegram_chat_id: {CHAT}\nany_symbol_above: 20\n"
                                        "bands: [lean, stretched, stressed]\ncooldown_minutes: 0\n")
    return Config.model_validate({
        "engine": {"interval_minutes": 0.001},                       # a cycle every 0.06 s
        "rules": {"rearm_minutes": 0},                # each HOT cycle crosses again after its CALM one (5 min below)
        "telegram": {"api_base_url": "https://api.telegram.invalid", "poll_timeout_s": 1},
        "discord": {"webhooks": [{"cooldown_minutes": 0}]},
    })


def rows_of(svc, channel: str) -> list[dict]:
    """The outbox rows of a channel (after run_bot closed the store: read from the file again)."""
    try:
        rows = svc.store.outbox_rows()
    except StoreClosed:
        store = Store(svc.store.path)
        try:
            rows = store.outbox_rows()
        finally:
            store.close()
    return [r for r in rows if r["channel"] == channel]


@pytest.mark.parametrize("outage", ["nothing listening", "502 from getMe"])
async def test_telegram_down_at_start_up_fails_alone_and_delivers_its_alerts_once_when_up(
        make_services, chat_env, monkeypatch, caplog, outage):
    caplog.set_level(logging.INFO)
    discord = DiscordSimServer()
    await discord.start()
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", discord.webhook_url())
    tg = TelegramSimServer(TOKEN)
    if outage == "nothing listening":
        port = free_port()
        monkeypatch.setenv("TELEGRAM_API_BASE_URL", f"http://127.0.0.1:{port}")
    else:
        monkeypatch.setenv("TELEGRAM_API_BASE_URL", await tg.start())
        tg.fail_next("getMe", 502, "Bad Gateway", times=-1)
    svc = make_services(chat_env, universe=SYMBOLS)
    enable_chat_adapters(svc)
    telegram = svc.supervisors[0]
    assert telegram.name == "telegram" and svc.supervisors[1].name == "discord"
    script = Script(svc.cfg, svc.store, [CALM, HOT])
    stop = asyncio.Event()
    task = asyncio.create_task(app_mod.run_bot(svc, stop, show_table=False, adapter_retry=RETRY,
                                               source=script))
    try:
        # cycles run, the webhook gets its alerts, Telegram's wait in the outbox without an attempt counted
        await until(lambda: len(messages(caplog, r"telegram: start failed \(attempt 5\)"))
                    and len(discord.webhook_messages(5555)) >= 2 and len(rows_of(svc, "telegram")) >= 2,
                    30, "5 start attempts, 2 webhook alerts and 2 Telegram alerts queued")
        assert script.calls >= 4 and telegram.state == "retrying"
        assert {(r["status"], r["attempts"]) for r in rows_of(svc, "telegram")} == {("pending", 0)}
        assert tg.sent(CHAT) == []
        tries = messages(caplog, r"telegram: start failed \(attempt (\d+)\): (.+); retrying in ([\d.]+)s")
        assert [int(m[1]) for m in tries] == list(range(1, len(tries) + 1))         # one line per attempt
        delays = [float(m[3]) for m in tries]
        assert delays[:5] == [0.02, 0.04, 0.08, 0.16, 0.16]                        # growing, capped
        assert all("NetworkError" in m[2] for m in tries) and TOKEN not in caplog.text

        # the platform comes back: the adapter comes up on its next attempt and sends what waited, once
        if outage == "nothing listening":
            await tg.start(port=port)
        else:
            tg.clear_faults()
        await until(lambda: telegram.state == "up", 10, "the Telegram adapter up")
        await until(lambda: len(rows_of(svc, "telegram")) >= 3
                    and {r["status"] for r in rows_of(svc, "telegram")} == {"sent"}, 30,
                    "every Telegram alert delivered, one queued after the adapter came up")
        assert messages(caplog, r"telegram: started after \d+ attempts")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await tg.stop()
        await discord.stop()
    queued = signal_counts([" ".join(f"signal {i}" for i in r["signal_ids"]) for r in rows_of(svc, "telegram")])
    got = signal_counts([m["plain"] for m in tg.sent(CHAT)])
    assert got == queued and set(got.values()) == {1}                 # every Telegram alert exactly once
    assert max(r["attempts"] for r in rows_of(svc, "telegram")) == 1
    assert {r["status"] for r in rows_of(svc, "webhook")} == {"sent"}


class JumpClock(SystemClock):
    """The real clock (real sleeps) that a test can move forward at once: `jump(s)`."""

    def __init__(self):
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


async def test_telegram_down_later_pauses_its_alerts_until_it_answers_again(make_services, chat_env, monkeypatch,
                                                                            caplog):
    caplog.set_level(logging.INFO)
    tg = TelegramSimServer(TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", await tg.start())
    monkeypatch.delenv("DISCORD_WEBHOOK_URL", raising=False)
    cfg = chat_env.model_copy(update={"discord": Config().discord.model_copy(update={"webhooks": []})})
    svc = make_services(cfg, universe=SYMBOLS)
    enable_chat_adapters(svc)
    [telegram] = svc.supervisors
    script = Script(svc.cfg, svc.store, [CALM, HOT])
    stop = asyncio.Event()
    clock = JumpClock()                                 # the delivery worker's and the supervisor's
    task = asyncio.create_task(app_mod.run_bot(svc, stop, show_table=False, adapter_retry=RETRY,
                                               source=script, clock=clock))
    try:
        await until(lambda: tg.sent(CHAT), 30, "a first Telegram alert")
        tg.fail_next("*", 502, "Bad Gateway", times=-1)           # the Bot API goes away
        sent_before = len(tg.sent(CHAT))
        await until(lambda: messages(caplog, r"telegram: still unreachable \(check 3\)")
                    and sum(r["status"] == "pending" for r in rows_of(svc, "telegram")) >= 2, 30,
                    "3 failed reachability checks and 2 alerts waiting")
        assert telegram.state == "probing" and "telegram" in svc.paused_channels()
        waiting = [r for r in rows_of(svc, "telegram") if r["status"] == "pending"]
        assert max(r["attempts"] for r in waiting) <= 1              # paused: no attempt spent while it is down
        delays = [float(m[1]) for m in messages(caplog, r"telegram: still unreachable \(check \d+\): .*; "
                                                        r"checking again in ([\d.]+)s")]
        assert delays[:3] == [0.02, 0.04, 0.08]
        tg.clear_faults()
        await until(lambda: telegram.state == "up", 10, "Telegram reachable again")
        clock.jump(10)                                  # past the outbox's retry delay (1-3 s) of the failed delivery
        await until(lambda: len(tg.sent(CHAT)) > sent_before
                    and {r["status"] for r in rows_of(svc, "telegram")} == {"sent"}, 30,
                    "the waiting alerts delivered")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await tg.stop()
    queued = signal_counts([" ".join(f"signal {i}" for i in r["signal_ids"]) for r in rows_of(svc, "telegram")])
    got = signal_counts([m["plain"] for m in tg.sent(CHAT)])
    assert got == queued and set(got.values()) == {1}
    assert max(r["attempts"] for r in rows_of(svc, "telegram")) <= 2


class Flaky:
    """A chat adapter whose platform refuses `fails` starts, then works."""

    def __init__(self, fails: int, error: Exception | None = None):
        self.fails, self.error, self.starts = fails, error, 0

    async def start(self):
        self.starts += 1
        if self.starts <= self.fails:
            raise self.error or ConnectionRefusedError(111, "Connection refused")

    async def stop(self):
        pass

    def senders(self):
        return {"flaky": object()}

    def recipients(self):
        return []

    def disable_route(self, channel, address, error):
        pass


async def test_start_retries_double_up_to_the_cap_with_one_line_each(caplog):
    caplog.set_level(logging.INFO)
    clock, ups = FakeClock(), []
    sup = AdapterSupervisor(Flaky(9), on_up=lambda: ups.append(clock.time()), clock=clock)
    assert sup.name == "flaky" and sup.paused() == set()          # not launched: never paused
    sup.launch()
    await until(lambda: sup.state == "up", 5, "the adapter up")
    assert clock.sleeps == [1, 2, 4, 8, 16, 32, 60, 60, 60] and len(ups) == 1
    lines = messages(caplog, r"flaky: start failed \(attempt (\d)\): ConnectionRefusedError: .*retrying in (\d+)s")
    assert [(int(m[1]), int(m[2])) for m in lines] == list(zip(range(1, 10), clock.sleeps))
    assert messages(caplog, "flaky: started after 10 attempts")

    refused = AdapterSupervisor(Flaky(5, AdapterRefused("the token was rejected")), on_up=lambda: None, clock=clock)
    refused.launch()
    await until(lambda: refused.state == "refused", 5, "refused")
    assert refused.adapter.starts == 1 and refused.paused() == {"flaky"}
    assert messages(caplog, "flaky: refused at start-up: the token was rejected; not retrying")


async def test_discord_bot_still_connecting_pauses_its_channels_but_not_its_webhooks(make_services, monkeypatch,
                                                                                     caplog):
    """Discord unreachable at start-up: DiscordBot keeps retrying the login (its own back-off); the adapter's start
    returns after its ready timeout, and until the bot is ready its channels are unavailable: their alerts stay
    pending, while the webhook channel (no connection needed) is not paused."""
    from bot.adapters.discord import DiscordAdapter
    caplog.set_level(logging.INFO)
    for k in ("DISCORD_BOT_TOKEN", "DISCORD_WEBHOOK_URL", "DISCORD_API_BASE_URL", "DISCORD_GATEWAY_URL"):
        monkeypatch.delenv(k, raising=False)
    discord = DiscordSimServer()
    await discord.start()
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", discord.webhook_url())
    svc = make_services(Config.model_validate({"discord": {"channels": [{"id": 42}]}}), universe=SYMBOLS)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "MTEx.nobody.listens")
    monkeypatch.setenv("DISCORD_API_BASE_URL", f"http://127.0.0.1:{free_port()}/api/v10")     # nothing listening
    adapter = svc.register(DiscordAdapter.from_env(svc.cfg, svc.queries, svc.store, ready_timeout=0.3))
    [sup] = svc.supervisors
    try:
        sup.launch(0.1, 0.4)
        await until(lambda: sup.state == "up", 10, "the adapter's start returned")
        await until(lambda: messages(caplog, r"discord login failed \(\w+\); retrying in"), 10, "a login retry")
        assert svc.paused_channels() == adapter.unavailable() == {"discord-channel", "discord-dm"}
        assert "webhook" in svc.senders and "webhook" not in svc.paused_channels()
    finally:
        await sup.stop()
        await adapter.stop()
        await discord.stop()


# ==================================================================================== console on a full disk
def queue_console(store: Store, n: int) -> list[str]:
    """n digests for n console recipients, one signal each; returns the signal ids."""
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    ids = [f"SQ{b32[i // 32]}{b32[i % 32]}AAAA" for i in range(n)]
    receipt = {"rule": "cross:60", "kind": "threshold", "threshold": 60, "prev_score": 50, "score": 61,
               "band": "stretched", "bias": "LONG", "regime": "Net long", "reason": "r", "contributions": {},
               "inputs": {}, "raw": None}
    store.commit_alert_cycle({"ts": T0, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                             [dict(id=i, ts=T0, symbol=f"X{k}USDT", rule="cross:60", kind="threshold", score=61,
                                   bias="LONG", regime="Net long", receipt=receipt) for k, i in enumerate(ids)], [],
                             [dict(key=f"{T0}:u{k}:console:u{k}", recipient=f"u{k}", channel="console",
                                   address=f"u{k}", created=T0, due=T0, signal_ids=[i]) for k, i in enumerate(ids)])
    return ids


async def test_every_alert_is_printed_once_when_the_alert_log_cannot_be_written(tmp_path, caplog):
    """`--alert-log /dev/full`: every write fails with ENOSPC. Before, the print came first and the failed write
    made the outbox retry it: 10 of 32 alerts printed 2-3 times. Now each is printed exactly once."""
    store = Store(tmp_path / "c.db")
    try:
        ids = queue_console(store, 32)
        out = io.StringIO()
        sender = ConsoleSender(stream=out, alert_log="/dev/full")
        worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: T0, concurrency=4)
        assert await worker.deliver_due() == 32
        for _ in range(3):
            assert await worker.deliver_due() == 0
        assert {r["status"] for r in store.outbox_rows()} == {"sent"}
        assert signal_counts([out.getvalue()]) == {i: 1 for i in ids}
        assert out.getvalue().count("🔔") == 32
        assert sender.log_failures == 32
        assert len(messages(caplog, r"alert log /dev/full: write failed \(.*No space left on device\); "
                                    "printing the alert anyway")) == 32
        assert await sender.was_delivered(f"{T0}:u0:console:u0") is None     # /dev/full cannot vouch: unknown
    finally:
        store.close()


class BrokenOnce(io.StringIO):
    """A stdout whose first write fails (a closed pipe), then works."""

    def __init__(self):
        super().__init__()
        self.broken = True

    def write(self, s):
        if self.broken:
            self.broken = False
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)


async def test_the_log_line_comes_first_and_a_retried_print_does_not_write_it_twice(tmp_path):
    store = Store(tmp_path / "c.db")
    try:
        [sid] = queue_console(store, 1)
        log_path = tmp_path / "alerts.jsonl"
        out = BrokenOnce()
        sender = ConsoleSender(stream=out, alert_log=log_path)
        now = [T0]
        worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: now[0])
        await worker.deliver_due()                 # the line is written, the print fails: the row is retried
        (row,) = store.outbox_rows()
        assert row["status"] == "pending" and "BrokenPipeError" in row["last_error"]
        assert sender.delivered_keys() == [row["key"]] and out.getvalue() == ""
        now[0] += 10 * MIN
        await worker.deliver_due()
        assert store.outbox_rows()[0]["status"] == "sent"
        assert signal_counts([out.getvalue()]) == {sid: 1}
        assert sender.delivered_keys() == [row["key"]]                   # still one line
        assert await sender.was_delivered(row["key"]) is True
    finally:
        store.close()


# ==================================================================================== the exchange's clock
H60 = 60 * HOUR


@pytest.mark.parametrize("skews", [
    pytest.param([-H60] * 8, id="60h-behind"),
    pytest.param([-H60, -H60, 0, 0, 0, 0, 0, 0], id="60h-behind-then-corrected"),
    pytest.param([0, 0, -H60, -H60, -H60, -H60, -H60, -H60], id="set-back-60h-mid-run"),
])
async def test_rules_follow_the_exchange_clock_when_the_local_clock_is_60h_off(make_services, tmp_path, caplog,
                                                                               skews):
    caplog.set_level(logging.INFO)
    wl = tmp_path / "watchlists"
    wl.mkdir()
    (wl / "desk.yaml").write_text("name: Desk\nany_symbol_above: 20\nbands: [lean, stretched, stressed]\n"
                                  "regimes: []\nbias_flips: false\ncooldown_minutes: 30\n")
    (wl / "night.yaml").write_text("name: Night\nany_symbol_above: 20\nbands: [lean, stretched, stressed]\n"
                                   "regimes: []\nbias_flips: false\ncooldown_minutes: 30\n"
                                   "timezone: UTC\nquiet_hours: \"11:00-14:00\"\n")
    # each HOT crosses again after one CALM cycle (5 minutes below): re-arming at once, as the plan assumes
    svc = make_services(Config.model_validate({"rules": {"rearm_minutes": 0}}), universe=SYMBOLS)
    assert sorted(uid for uid, _ in svc.watchlists.items()) == ["desk", "night"]
    plan = [CALM, HOT, CALM, HOT, CALM, CALM, CALM, HOT]   # HOT at +5, +15 (cooldown) and +35 min
    script = Script(svc.cfg, svc.store, plan)
    old = OIPoint("BTCUSDT", T0 - (svc.cfg.history.retention_hours + 1) * HOUR, 900.0, 1.0)
    svc.store.add_oi_points([old])
    local_ms = lambda: script.ts + skews[script.calls - 1]                 # noqa: E731
    engine = Engine(svc.cfg, svc.store, None, svc.recipients, source=script,
                    clock=lambda: datetime.fromtimestamp(local_ms() / 1000, timezone.utc))
    reports = []
    for _ in plan:
        reports.append(await engine.run_once())
    fired_at = [i for i, r in enumerate(reports) for d in r.deliveries if d.recipient == "desk"]
    assert sorted(set(fired_at)) == [1, 7]            # +15 min is inside the 30-minute cooldown; +35 is not
    assert {e.rule for e in reports[3].events} >= {"cross:20"}             # the events were there at +15 min

    # the outbox's times are on the delivery worker's clock (the local one); quiet hours on the local clock too
    rows = svc.store.outbox_rows()
    desk = [r for r in rows if r["recipient"] == "desk"]
    night = [r for r in rows if r["recipient"] == "night"]
    for r in desk:
        cycle_ts = int(r["key"].split(":")[0])
        k = (cycle_ts - T0) // (5 * MIN)
        assert r["created"] == r["due"] == cycle_ts + skews[k]
    local_now = T0 + 7 * 5 * MIN + skews[7]
    worker = DeliveryWorker(svc.store, {"console": ConsoleSender(stream=io.StringIO())}, now_ms=lambda: local_now)
    await worker.deliver_due()
    status = {r["key"]: r["status"] for r in svc.store.outbox_rows() if r["recipient"] == "desk"}
    # the row of the last cycle is due at once on the worker's clock; a row queued before the local clock was set
    # back waits for its due time on that clock (the documented limit of a clock stepped back)
    assert status == {r["key"]: "sent" if r["due"] <= local_now else "pending" for r in desk}
    assert list(status.values()) == (["pending", "sent"] if skews[1] > skews[7] else ["sent", "sent"])
    for r in night:                                  # held while local 11:00-14:00 UTC, released at 14:00 local
        cycle_ts = int(r["key"].split(":")[0])
        k = (cycle_ts - T0) // (5 * MIN)
        local = datetime.fromtimestamp((cycle_ts + skews[k]) / 1000, timezone.utc)
        if 11 <= local.hour < 14:
            assert r["key"].endswith(":held") and r["due"] == int(local.replace(hour=14, minute=0).timestamp() * 1000)
        else:
            assert not r["key"].endswith(":held") and r["due"] == cycle_ts + skews[k]

    # cooldowns are stored on the exchange's time
    fired = sqlite3.connect(svc.store.file).execute("SELECT DISTINCT ts FROM last_fired").fetchall()
    assert {ts for (ts,) in fired} <= {T0 + k * 5 * MIN for k in range(len(plan))}

    # one warning while the clocks disagree (and one line when they agree again)
    warned = messages(caplog, r"clock: the exchange's time \(cycle ts=\d+\) is ([\d.]+ h) (ahead of|behind) this "
                              r"machine's clock")
    assert [(m[1], m[2]) for m in warned] == [("60.0 h", "ahead of")]
    agreed = messages(caplog, "clock: the exchange's time and this machine's clock agree again")
    assert len(agreed) == (1 if skews[-1] == 0 else 0)
    assert engine.clock_offset_ms == -skews[-1]

    # retention counts back from the exchange's time: the old point goes, this run's history stays
    points = len(svc.store.oi_points_between(0, 2**62))
    hourly_housekeeping(svc)
    assert svc.store.oi_points_between(0, 2**62) and len(svc.store.oi_points_between(0, 2**62)) == points - 1
    assert old not in svc.store.oi_points_between(0, 2**62)


def test_the_skew_threshold_is_two_minutes_and_the_demo_has_none():
    from bot.cli_run import demo_config
    from bot.config import Config
    assert Config().engine.clock_skew_warn_s == 120
    assert demo_config(Config(), 1.5).engine.clock_skew_warn_s is None     # its market runs ahead on purpose


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


# ==================================================================================== as a real process
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.process
def test_run_with_the_alert_log_on_dev_full_prints_every_alert_once(tmp_path, sim_start_ms):
    from conftest import wait_for
    market = subprocess.Popen([sys.executable, "-m", "bot.demo_market.binance_server", "--port", "0", "--symbols",
                               "80", "--seed", "11", "--start-ms", str(sim_start_ms), "--speed", "600",
                               "--weight-limit", "1000000", "--futures-data-limit", "100000"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = market.stdout.readline().strip()
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("engine: {interval_minutes: 0.02}\nexchange: {weight_limit: 1000000, data_limit_per_5m: 100000}\n"
                   "universe: {min_quote_volume: 0}\n")
    wl = tmp_path / "watchlists"
    wl.mkdir()
    (wl / "trader.yaml").write_text("name: Trader\nany_symbol_above: 20\nbands: [lean, stretched, stressed]\n"
                                    "cooldown_minutes: 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DISCORD_"))}
    stdout = open(tmp_path / "out.txt", "w")
    bot = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(cfg), "run", "--exchange-url", url,
                            "--db", str(tmp_path / "bot.db"), "--watchlists", str(wl), "--alert-log", "/dev/full"],
                           cwd=ROOT, env=dict(env, BOT_LOG_LEVEL="INFO"), stdout=stdout,
                           stderr=open(tmp_path / "bot.log", "w"))

    def outbox() -> list[tuple[str, str, str]]:
        try:
            db = sqlite3.connect(tmp_path / "bot.db", timeout=10)
            try:
                return db.execute("SELECT key, status, signal_ids FROM outbox").fetchall()
            finally:
                db.close()
        except sqlite3.OperationalError:
            return []
    try:
        wait_for(lambda: len(outbox()) >= 12 and {s for _, s, _ in outbox()} == {"sent"}, 120,
                 "at least 12 alerts queued and every one delivered")
    finally:
        bot.send_signal(signal.SIGTERM)
        code = bot.wait(15)
        market.terminate()
        market.wait(10)
        stdout.close()
    assert code == 0
    rows = outbox()
    queued = signal_counts([" ".join(f"signal {i}" for i in json.loads(ids)) for _, _, ids in rows])
    printed = signal_counts([(tmp_path / "out.txt").read_text()])
    assert printed == queued and set(printed.values()) == {1}, "every alert printed exactly once"
    log = (tmp_path / "bot.log").read_text()
    assert log.count("alert log /dev/full: write failed") == (tmp_path / "out.txt").read_text().count("🔔")
