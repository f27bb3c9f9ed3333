"""Discord adapter end to end against the loopback Discord (fakes/discord_server.py).

Webhook mode: the real outbox (alerts committed by the real Engine) -> DeliveryWorker -> WebhookSender (httpx)
-> the sim's webhook execute API, including 429 with retry_after and 404 for a deleted webhook.
Bot mode: the REAL discord.py client logs in, connects to the sim's gateway, syncs the registry's slash
commands and answers INTERACTION_CREATE events; alerts go to channels and DMs through the same outbox.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime, timezone

import pytest
from conftest import closing_of, commit_sealed

import bot.adapters.discord.client as discord_client_mod
import bot.commands as registry
from bot import app as app_mod
from bot.adapters.discord import (COLOURS, MAX_DESCRIPTION, MAX_EMBED_TOTAL, MAX_EMBEDS,
                                  DiscordAdapter, digest_messages, embed_size, reply_messages)
from bot.rules import EVERY_SYMBOL, FilterSubscriber
from bot.app import Services
from bot.clock import FakeClock
from bot.commands import Reply, Table
from bot.config import AlertFilter, Config
from bot.cycle import CycleOutcome
from bot.engine import Engine, Event
from bot.logsetup import install_redaction
from bot.market import CycleData
from bot.outbox import DeliveryWorker, Digest
from bot.rules import wants
from bot.score import ScoreInputs, score_all
from fakes.discord_server import DiscordSimServer

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
CALM = [ScoreInputs(s, 0.0001, 8, 0.001, 0.002, 0.005, 0.0001, 0.001, 0.002) for s in SYMBOLS]
HOT = [  # BTC 75 LONG long_crowded · ETH 44 LONG net_long · SOL 63 SHORT short_ramp · DOGE 86 SHORT short_covering
    ScoreInputs("BTCUSDT", 0.0012, 8, 0.03, -0.03375, 0.15, 0.004, 0.015, 0.05),     # 12 - 9 + 28 + 28 + 16
    ScoreInputs("ETHUSDT", 0.0003, 8, 0.0075, 0.0, 0.06, 0.002, 0.01, 0.03),          # 3.6 + 11.2 + 16.8 + 12.8
    ScoreInputs("SOLUSDT", -0.0008, 8, -0.025, -0.06, 0.05, -0.003, -0.01, -0.05),    # -12 - 16 + 9.3 - 28 - 16
    ScoreInputs("DOGEUSDT", -0.0015, 8, -0.04, -0.08, -0.075, -0.005, -0.02, -0.08),  # -12 - 16 - 14 - 28 - 16
]
BOT_TOKEN = "MTExMQ.sim-bot-token.SECRET-b0t-7f3a9c2e"
FAST = {"client_options": {"guild_ready_timeout": 0.05}, "ready_timeout": 10}


# ---------------------------------------------------------------------------------------------- harness
@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in ("DISCORD_BOT_TOKEN", "DISCORD_WEBHOOK_URL", "DISCORD_API_BASE_URL", "DISCORD_GATEWAY_URL",
              "DISCORD_FORCE_SYNC"):
        monkeypatch.delenv(k, raising=False)
    install_redaction()


@pytest.fixture
async def server():
    srv = DiscordSimServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def make_svc(make_services):
    """Services (the shared conftest factory) with this `discord` config section, trading SYMBOLS."""
    def make(discord: dict, db: str = "bot.db") -> Services:
        return make_services(Config.model_validate({"discord": discord}), db=db, universe=SYMBOLS)
    return make


class Cycles:
    """The real Engine (detect -> route -> one-transaction commit of signals + outbox) fed with fixed inputs."""

    def __init__(self, svc: Services):
        self.svc, self.queue = svc, []
        self.ts = 1_760_000_000_000
        self.engine = Engine(svc.cfg, svc.store, None, svc.recipients, source=self)

    async def next_cycle(self) -> CycleOutcome:
        """The engine's market source: the next queued inputs, scored, 5 minutes after the last cycle."""
        inputs = self.queue.pop(0)
        self.ts += 300_000
        results = score_all(inputs, self.svc.cfg.score)
        return CycleOutcome(self.ts, results, CycleData(self.ts, inputs, {}), 0.1, 0, 0, 0)

    async def run(self, inputs):
        self.queue.append(inputs)
        report = await self.engine.run_once()
        await self.svc.refresh_market()          # what the app does after each cycle: publish the scores
        return report


def add_adapter(svc: Services, **options) -> DiscordAdapter:
    """As bot.app.enable_chat_adapters does: from the environment, registered with the app (whose
    permanent-failure handler asks it to disable a route)."""
    return svc.register(DiscordAdapter.from_env(svc.cfg, svc.queries, svc.store, **options))


def make_worker(svc: Services, clock: FakeClock | None = None) -> DeliveryWorker:
    """As run_bot builds it (permanent failures disable the route); with `clock`, the worker and the webhook
    sender's bucket waits run on that clock (rows already queued are due at once on a clock made after them)."""
    if clock is None:
        return app_mod.delivery_worker(svc)
    if "webhook" in svc.senders:
        svc.senders["webhook"].clock = clock
    return app_mod.delivery_worker(svc, clock)


def outbox(svc: Services, channel: str | None = None) -> list[dict]:
    rows = svc.store.outbox_rows()
    return [r for r in rows if channel is None or r["channel"] == channel]


def posts(server: DiscordSimServer, fragment: str) -> list:
    return [c for c in server.calls if c[0] == "POST" and fragment in c[1]]


def rules_of(message: dict) -> set[str]:
    return {f["value"].replace("\\", "") for e in message["embeds"] for f in e.get("fields", []) if f["name"] == "Rule"}


def titles(message: dict) -> list[str]:
    return [e.get("title", "") for e in message["embeds"]]


def disabled_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.adapters.discord.routes" and "disabled:" in r.getMessage()]


# ---------------------------------------------------------------------------------------------- pure parts
def test_channel_filters_behave_like_their_config():
    cfg = Config()
    result = {"regime_key": "long_crowded"}
    cross60 = Event("XRPUSDT", "cross:60", "threshold", 64, 50, result, threshold=60)
    cross35 = Event("XRPUSDT", "cross:35", "threshold", 40, 30, result, threshold=35)
    cross15 = Event("XRPUSDT", "cross:15", "threshold", 16, 10, result, threshold=15)
    regime = Event("XRPUSDT", "regime:long_crowded", "regime", 40, 38, result)
    weak_regime = Event("XRPUSDT", "regime:long_crowded", "regime", 30, 28, result)

    anywhere = FilterSubscriber.from_filter(AlertFilter())       # symbols: [] = any symbol
    assert anywhere.symbols is EVERY_SYMBOL
    # both configured bands alert for any symbol (a plain [] + any_symbol_above would miss the 60 crossing)
    assert wants(anywhere, cross35, cfg.score) and wants(anywhere, cross60, cfg.score)
    assert wants(anywhere, regime, cfg.score) and not wants(anywhere, weak_regime, cfg.score)

    majors = FilterSubscriber.from_filter(AlertFilter(symbols=["btc", "ETHUSDT"]), SYMBOLS)
    assert majors.symbols == {"BTCUSDT", "ETHUSDT"} and majors.any_symbol_above is None
    assert not any(wants(majors, e, cfg.score) for e in (cross35, cross60, regime))
    assert wants(majors, Event("BTCUSDT", "cross:60", "threshold", 64, 50, result, threshold=60), cfg.score)

    # min_score is a floor: a lean band below it is ignored; stressed-only channels get only 60
    floor = FilterSubscriber.from_filter(AlertFilter(bands=["lean", "stressed"], min_score=50))
    assert not wants(floor, cross15, cfg.score) and not wants(floor, cross35, cfg.score)
    assert wants(floor, cross60, cfg.score)
    assert not floor.is_muted("BTCUSDT", datetime.now(timezone.utc)) and not floor.in_quiet_hours(datetime.now(timezone.utc))


def _within_limits(messages: list[dict]) -> None:
    for m in messages:
        assert 1 <= len(m["embeds"]) <= MAX_EMBEDS
        assert sum(embed_size(e) for e in m["embeds"]) <= MAX_EMBED_TOTAL
        assert len(m.get("content") or "") <= 2000
        for e in m["embeds"]:
            assert len(e.get("description", "")) <= MAX_DESCRIPTION and len(e.get("title", "")) <= 256
            assert len(e.get("fields", [])) <= 25


def test_long_answers_and_digests_are_split_within_discord_limits():
    rows = [(str(i), f"SYM{i:03d}USDT", str(i % 100), "LONG", "+1.00%", "+2.00%", "+0.010%", "+0.10%")
            for i in range(400)]
    table = Table(("#", "Symbol", "Score", "Bias", "OI 1h", "OI 24h", "Funding", "Basis"), rows, "caption_with_underscores")
    msgs = reply_messages(Reply(title="Top", table=table, text="word " * 3000, bias="SHORT"))
    _within_limits(msgs)
    assert len(msgs) > 1
    blocks = [e["description"] for m in msgs for e in m["embeds"]]
    assert all(b.count("```") % 2 == 0 for b in blocks)           # code blocks never cut open
    assert sum(b.count("SYM") for b in blocks) == 400              # every row, once
    assert "caption\\_with\\_underscores" in blocks[1] or any("caption\\_with" in b for b in blocks)
    assert {e["color"] for m in msgs for e in m["embeds"]} == {COLOURS["SHORT"]}

    sigs = [{"id": f"S{i:07d}", "ts": 1_760_000_000_000, "symbol": f"SYM{i}USDT", "rule": "cross:60", "kind": "threshold",
             "score": 90 - i, "bias": "LONG" if i % 2 else "SHORT", "regime": "Long crowded",
             "receipt": {"rule": "cross:60", "threshold": 60, "prev_score": 50, "band": "stressed", "bias": "LONG",
                         "regime": "Long crowded · x" * 3, "reason": "why " * 200, "inputs": {"funding_rate": 0.001}}}
            for i in range(30)]
    dmsgs = digest_messages(Digest("r", ["k1", "k2"], sigs))
    _within_limits(dmsgs)
    assert dmsgs[0]["content"] == "🔔 30 alerts"
    embeds = [e for m in dmsgs for e in m["embeds"]]
    assert sum(1 for e in embeds if e.get("fields")) == 10          # the top 10 in full
    assert "… and 20 more" in embeds[-1]["title"] and "S0000029" in embeds[-1]["description"]


# ---------------------------------------------------------------------------------------------- webhook mode
async def test_webhook_alert_digest_delivered_once(server, make_svc, monkeypatch):
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.webhook_url())
    svc = make_svc({})                                  # default: webhook "default", any symbol, 35+
    adapter = add_adapter(svc)
    assert "webhook" in svc.senders and "discord-channel" not in svc.senders
    await adapter.start()
    try:
        cycles = Cycles(svc)
        await cycles.run(CALM)
        await cycles.run(HOT)
        await cycles.run(HOT)        # regimes alert once confirmed (rules.regime_confirm_cycles)
        rows = outbox(svc, "webhook")
        assert rows and {(r["address"], r["recipient"]) for r in rows} == {("default", "dc-webhook-default")}
        signal_ids = {i for r in rows for i in r["signal_ids"]}
        worker = make_worker(svc)
        assert await worker.deliver_due() == 1       # the due rows of one route go out as one digest
        assert await worker.deliver_due() == 0
        msgs = server.webhook_messages(5555)
        assert len(msgs) == 1
        m = msgs[0]
        assert m["content"] == f"🔔 {len(signal_ids)} alerts"
        # any-symbol channel: both band crossings (35 and 60) and the regime entries
        assert {"cross:35", "cross:60", "regime:long_crowded", "regime:short_ramp"} <= rules_of(m)
        first = m["embeds"][0]
        assert first["title"].startswith("DOGEUSDT 86 stressed SHORT")       # ordered by score
        assert first["color"] == COLOURS["SHORT"]
        btc = next(e for e in m["embeds"] if e["title"].startswith("BTCUSDT"))
        assert btc["color"] == COLOURS["LONG"]
        fields = {f["name"]: f["value"] for f in btc["fields"]}
        assert fields["Score"].startswith("75 (stressed)") and "Long crowded" in fields["Regime"]
        assert "+3.00%" in fields["Open interest"] and fields["Funding"].startswith("+0.1200%")
        ids = {e["footer"]["text"].split()[1] for e in m["embeds"]}
        assert ids == signal_ids                                            # every signal id shown
        assert all(svc.store.signal(i) is not None for i in ids)
        assert {r["status"] for r in outbox(svc)} == {"sent"}
        assert len(posts(server, "/webhooks/5555/")) == 1
    finally:
        await adapter.stop()
        svc.store.close()


async def test_webhook_429_is_kept_and_delivered_later_exactly_once(server, make_svc, monkeypatch):
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.webhook_url())
    svc = make_svc({})
    adapter = add_adapter(svc)
    await adapter.start()
    try:
        cycles = Cycles(svc)
        await cycles.run(CALM)
        await cycles.run(HOT)
        server.fail_next("/webhooks/5555/", 429, {"message": "You are being rate limited.", "retry_after": 0.4,
                                                   "global": False})
        clock = FakeClock(time=time.time())
        worker = make_worker(svc, clock)
        await worker.deliver_due()
        [row] = outbox(svc)
        assert row["status"] == "pending" and "rate limited" in row["last_error"]
        assert row["due"] == int(clock.time() * 1000) + 400
        assert server.webhook_messages(5555) == []
        await worker.deliver_due()                      # not due yet: nothing is sent early
        assert len(posts(server, "/webhooks/5555/")) == 1
        clock.advance(0.45)
        await worker.deliver_due()
        await worker.deliver_due()
        assert len(server.webhook_messages(5555)) == 1
        assert [r["status"] for r in outbox(svc)] == ["sent"]
    finally:
        await adapter.stop()
        svc.store.close()


async def test_webhook_429_on_a_later_message_resumes_after_the_ones_posted(server, make_svc, monkeypatch):
    """A digest of several webhook messages: Discord rate-limits the second; the row keeps its progress and
    the retry posts the rest, so every message is posted exactly once, in order."""
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.webhook_url())
    svc = make_svc({})
    adapter = add_adapter(svc)
    await adapter.start()
    try:
        now = int(time.time() * 1000)
        sigs = [{"id": f"W{i:07d}", "ts": now, "symbol": f"SYM{i}USDT", "rule": "cross:60", "kind": "threshold",
                 "score": 90 - i, "bias": "LONG", "regime": "Long crowded",
                 "receipt": {"rule": "cross:60", "kind": "threshold", "threshold": 60, "prev_score": 50,
                             "band": "stressed", "bias": "LONG", "regime": "Long crowded", "reason": "why " * 200,
                             "inputs": {"funding_rate": 0.001}}} for i in range(30)]
        key = f"{now}:dc-webhook-default:webhook:default"
        svc.store.commit_alert_cycle(dict(ts=now, duration_s=0.0, requests=0, weight=0, failed={}), [], {}, sigs, [],
                                     [dict(key=key, recipient="dc-webhook-default", channel="webhook", address="default",
                                           created=now, due=now, signal_ids=[g["id"] for g in sigs])])
        expected = digest_messages(Digest("dc-webhook-default", [key], svc.store.signals([g["id"] for g in sigs])))
        assert len(expected) >= 3
        record = svc.store.record_parts_sent

        def rate_limited_after_the_first(ids, parts_sent, digest_key, **kw):   # Discord starts to push back
            record(ids, parts_sent, digest_key, **kw)
            if parts_sent == 1:
                server.fail_next("/webhooks/5555/", 429, {"message": "You are being rate limited.",
                                                           "retry_after": 2.5, "global": False})
        svc.store.record_parts_sent = rate_limited_after_the_first
        clock = FakeClock(time=time.time())
        worker = make_worker(svc, clock)
        await worker.deliver_due()
        [row] = outbox(svc)
        assert row["status"] == "pending" and row["parts_sent"] == 1 and "rate limited" in row["last_error"]
        assert len(server.webhook_messages(5555)) == 1 and len(posts(server, "/webhooks/5555/")) == 2
        clock.advance(2.5)
        await worker.deliver_due()
        await worker.deliver_due()
        got = server.webhook_messages(5555)
        assert [(m["content"], titles(m)) for m in got] == [(m.get("content", ""), titles(m)) for m in expected]
        assert len(posts(server, "/webhooks/5555/")) == len(expected) + 1      # the one 429, nothing repeated
        assert clock.sleeps == []                       # the bucket had refilled: no wait
        [row] = outbox(svc)
        assert row["status"] == "sent" and row["parts_sent"] == len(expected)
    finally:
        await adapter.stop()
        svc.store.close()


async def test_webhook_deleted_is_reported_once_disabled_and_not_retried(server, make_svc, monkeypatch, caplog):
    url = server.webhook_url()
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", url)
    svc = make_svc({})
    adapter = add_adapter(svc)
    await adapter.start()
    try:
        cycles = Cycles(svc)
        await cycles.run(CALM)
        await cycles.run(HOT)
        server.delete_webhook(5555)
        worker = make_worker(svc)
        await worker.deliver_due()
        [row] = outbox(svc)
        assert row["status"] == "failed" and "10015" in row["last_error"]
        assert adapter.is_disabled("webhook", "default")
        assert len(disabled_warnings(caplog)) == 1
        # a message queued before the disable: fails for good without a request and without a second report
        svc.store.mark_outbox([row["id"]], "pending", due=0)
        await worker.deliver_due()
        await worker.deliver_due()
        assert len(posts(server, "/webhooks/5555/")) == 1
        assert len(disabled_warnings(caplog)) == 1
        assert not [r for r in svc.recipients() if r.id == "dc-webhook-default"]   # no new alerts queued
        assert url not in caplog.text and "hooktoken" not in caplog.text
    finally:
        await adapter.stop()
    # persisted: a restart keeps it disabled; a new URL enables it again
    svc2 = make_svc({})
    assert DiscordAdapter.from_env(svc2.cfg, svc2.queries, svc2.store).is_disabled("webhook", "default")
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.webhook_url(5556, "newtoken"))
    svc3 = make_svc({})
    assert not DiscordAdapter.from_env(svc3.cfg, svc3.queries, svc3.store).is_disabled("webhook", "default")
    for s in (svc, svc2, svc3):
        s.store.close()


async def test_several_webhook_urls_with_their_own_filters(server, make_svc, monkeypatch):
    monkeypatch.setenv("DC_HOOK_MAJORS", server.webhook_url(5601, "majors-token"))
    monkeypatch.setenv("DC_HOOK_STRESSED", f"{server.webhook_url(5602, 'stressed-a')} , {server.webhook_url(5603, 'stressed-b')}")
    svc = make_svc({"webhooks": [
        {"name": "majors", "url_env": "DC_HOOK_MAJORS", "symbols": ["btc", "ETHUSDT"]},
        {"name": "stressed", "url_env": "DC_HOOK_STRESSED", "min_score": 60, "bands": ["stressed"], "regimes": [],
         "bias_flips": False},
        {"name": "unset", "url_env": "DC_HOOK_NOT_SET"},
    ]})
    adapter = add_adapter(svc)
    await adapter.start()
    try:
        recips = {r.id: [rt.address for rt in r.routes] for r in svc.recipients()}
        assert recips == {"dc-webhook-majors": ["majors"], "dc-webhook-stressed": ["stressed", "stressed-2"]}
        cycles = Cycles(svc)
        await cycles.run(CALM)
        await cycles.run(HOT)
        await cycles.run(HOT)
        await make_worker(svc).deliver_due()
        [majors] = server.webhook_messages(5601)
        assert {t.split()[0] for t in titles(majors)} == {"BTCUSDT", "ETHUSDT"}
        assert rules_of(majors) == {"cross:35", "cross:60", "regime:long_crowded"}
        for wid in (5602, 5603):
            [m] = server.webhook_messages(wid)
            assert {t.split()[0] for t in titles(m)} == {"DOGEUSDT", "BTCUSDT", "SOLUSDT"}
            assert rules_of(m) == {"cross:60"}
        assert len(posts(server, "/webhooks/")) == 3
    finally:
        await adapter.stop()
        svc.store.close()


# ---------------------------------------------------------------------------------------------- bot mode
def bot_env(monkeypatch, server: DiscordSimServer) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("DISCORD_API_BASE_URL", server.api_base)
    monkeypatch.setenv("DISCORD_GATEWAY_URL", server.gateway_url)


async def start_bot(svc: Services) -> DiscordAdapter:
    adapter = add_adapter(svc, **FAST)
    await adapter.start()
    assert adapter.client is not None and adapter.client.is_ready()
    return adapter


async def answer(server: DiscordSimServer, name: str, options=None, user_id: int = 4444, count: int = 2) -> list[dict]:
    token = await server.send_interaction(name, options, user_id=user_id)
    return await server.wait_interaction_responses(token, count)


def body_of(responses: list[dict]) -> dict:
    """The message a user sees: a type-4 callback's data, or the follow-up after a defer."""
    last = responses[-1]
    return last["data"] if last["_kind"] == "callback" else last


async def test_bot_slash_commands_top_score_autocomplete(server, make_svc, monkeypatch):
    bot_env(monkeypatch, server)
    svc = make_svc({"webhooks": []})
    cycles = Cycles(svc)
    await cycles.run(HOT)
    adapter = await start_bot(svc)
    try:
        synced = {c["name"]: c for c in server.synced_commands}
        assert {"top", "score", "watch", "unwatch", "watchlist", "signals", "signal", "methodology", "chart"} <= set(synced)
        assert not {"start", "export", "import", "stats", "reload"} & set(synced)     # telegram-only / no admin guild
        bias = synced["top"]["options"][0]
        assert bias["name"] == "bias" and [c["value"] for c in bias["choices"]] == ["all", "long", "short"]
        assert synced["score"]["options"][0].get("autocomplete") is True

        res = await answer(server, "top", [{"name": "bias", "value": "long"}])
        assert res[0]["_kind"] == "callback" and res[0]["type"] == 5                 # deferred first
        e = body_of(res)["embeds"][0]
        assert e["title"] == "Top 2 · Long bias"
        assert "BTCUSDT" in e["description"] and "ETHUSDT" in e["description"] and "SOLUSDT" not in e["description"]
        assert "```" in e["description"]                                             # the table in a code block
        res = await answer(server, "top", [{"name": "bias", "value": "short"}, {"name": "n", "value": 1}])
        e = body_of(res)["embeds"][0]
        assert e["title"] == "Top 1 · Short bias" and "DOGEUSDT" in e["description"] and "SOLUSDT" not in e["description"]

        res = await answer(server, "score", [{"name": "symbol", "value": "sol"}])
        e = body_of(res)["embeds"][0]
        assert e["title"] == "SOLUSDT · 63 stressed" and e["color"] == COLOURS["SHORT"]
        assert "Contributions" in e["description"] and "Short ramp" in e["description"]
        res = await answer(server, "score", [{"name": "symbol", "value": "btx"}])
        e = body_of(res)["embeds"][0]
        assert "Unknown symbol" in e["description"] and "BTCUSDT" in e["description"]

        res = await answer(server, "methodology", count=1)                          # fast: answered directly
        assert res[0]["type"] == 4 and body_of(res)["embeds"][0]["title"] == "Methodology"
        res = await answer(server, "help", count=1)                                 # the slash commands only
        e = body_of(res)["embeds"][0]
        assert e["title"] == "Help" and e["description"].startswith("Derivatives Pressure Bot — slash commands:")
        assert "/top" in e["description"] and "/start" not in e["description"] and "/stats" not in e["description"]
        # a command that turns out slow is deferred before Discord's 3 s deadline, then answered
        slow = registry.REGISTRY["methodology"]

        async def sleepy(ctx):
            await asyncio.sleep(0.3)
            return await slow.handler(ctx)

        monkeypatch.setitem(registry.REGISTRY, "methodology", dataclasses.replace(slow, handler=sleepy))
        monkeypatch.setattr(discord_client_mod, "ACK_BUDGET_S", 0.05)
        res = await answer(server, "methodology")
        assert res[0]["type"] == 5 and body_of(res)["embeds"][0]["title"] == "Methodology"

        res = await answer(server, "chart", [{"name": "symbol", "value": "btc"}])   # images as attachments
        body = body_of(res)
        assert body["attachments"][0]["filename"] == "chart.png"
        assert body["embeds"][0]["image"]["url"] == "attachment://chart.png"

        token = await server.send_interaction("score", [{"name": "symbol", "value": "do", "focused": True}], type=4)
        [ac] = await server.wait_interaction_responses(token, 1)
        assert ac["type"] == 8 and ac["data"]["choices"][0] == {"name": "DOGEUSDT · 86 SHORT", "value": "DOGEUSDT"}
        token = await server.send_interaction("watch", [{"name": "symbols", "value": "BTC so", "focused": True}], type=4)
        [ac] = await server.wait_interaction_responses(token, 1)
        assert [c["value"] for c in ac["data"]["choices"]] == ["BTC SOLUSDT"]
    finally:
        await adapter.stop()
        svc.store.close()


async def test_bot_watch_and_unwatch_edit_only_the_callers_watchlist(server, make_svc, monkeypatch):
    bot_env(monkeypatch, server)
    server.add_user(4445, "other")
    svc = make_svc({"webhooks": []})
    await Cycles(svc).run(HOT)
    await svc.watchlists.ensure("dc-4445", discord_user_id=4445)
    await svc.watchlists.add_symbols("dc-4445", ["ETH"])
    other_file = svc.watchlists.directory / "dc-4445.yaml"
    other_before = other_file.read_bytes()
    adapter = await start_bot(svc)
    try:
        res = await answer(server, "watch", [{"name": "symbols", "value": "btc, sol"}], user_id=4444, count=1)
        assert res[0]["type"] == 4 and res[0]["data"]["flags"] & 64                   # ephemeral: personal
        assert "Added: BTCUSDT, SOLUSDT" in res[0]["data"]["embeds"][0]["description"]
        mine = svc.watchlists.get("dc-4444")
        assert mine.symbols == ["BTCUSDT", "SOLUSDT"] and mine.discord_user_id == 4444 and mine.name == "Trader"
        assert other_file.read_bytes() == other_before

        res = await answer(server, "unwatch", [{"name": "symbols", "value": "btc"}], user_id=4445, count=1)
        assert "Not in your list: BTCUSDT" in res[0]["data"]["embeds"][0]["description"]
        assert svc.watchlists.get("dc-4444").symbols == ["BTCUSDT", "SOLUSDT"]
        res = await answer(server, "unwatch", [{"name": "symbols", "value": "btc"}], user_id=4444, count=1)
        assert "Removed: BTCUSDT" in res[0]["data"]["embeds"][0]["description"]
        assert svc.watchlists.get("dc-4444").symbols == ["SOLUSDT"]
        assert svc.watchlists.get("dc-4445").symbols == ["ETHUSDT"] and other_file.read_bytes() == other_before

        res = await answer(server, "watchlist", user_id=4445, count=1)
        assert "ETHUSDT" in res[0]["data"]["embeds"][0]["description"]
        res = await answer(server, "unwatch", [{"name": "symbols", "value": "eth"}], user_id=4446, count=1)
        assert "/watch SYMBOL creates it" in res[0]["data"]["embeds"][0]["description"]
        assert svc.watchlists.get("dc-4446") is None
    finally:
        await adapter.stop()
        svc.store.close()


async def test_bot_alert_reaches_channel_and_dm_once_deleted_channel_disabled(server, make_svc, monkeypatch, caplog):
    bot_env(monkeypatch, server)
    svc = make_svc({"webhooks": [], "channels": [{"id": 3333}, {"id": 9999, "min_score": 60}]})
    await svc.watchlists.ensure("dc-4444", discord_user_id=4444)
    await svc.watchlists.add_symbols("dc-4444", ["BTC"])
    adapter = await start_bot(svc)
    try:
        cycles = Cycles(svc)
        await cycles.run(CALM)
        await cycles.run(HOT)
        by_route = {(r["channel"], r["address"]) for r in outbox(svc)}
        assert by_route == {("discord-channel", "3333"), ("discord-channel", "9999"), ("discord-dm", "4444")}
        worker = make_worker(svc)
        await worker.deliver_due()
        await worker.deliver_due()
        [m] = server.channel_messages(3333)
        assert m["author"]["id"] == str(server.bot_user_id) and m["content"].startswith("🔔")
        assert {"cross:35", "cross:60"} <= rules_of(m)
        assert titles(m)[0].startswith("DOGEUSDT") and m["embeds"][0]["color"] == COLOURS["SHORT"]
        [dm] = server.dm_messages(4444)
        assert {t.split()[0] for t in titles(dm)} == {"BTCUSDT"}
        status = {(r["channel"], r["address"]): r["status"] for r in outbox(svc)}
        assert status == {("discord-channel", "3333"): "sent", ("discord-dm", "4444"): "sent",
                          ("discord-channel", "9999"): "failed"}
        assert adapter.is_disabled("discord-channel", "9999") and len(disabled_warnings(caplog)) == 1
        assert "10003" in adapter.disabled_routes()["discord-channel:9999"]["error"]
        # not retried, not queued again, reported once; the working channel is untouched
        bad = [r for r in outbox(svc) if r["address"] == "9999"]
        svc.store.mark_outbox([bad[0]["id"]], "pending", due=0)
        await worker.deliver_due()
        assert len(posts(server, "/channels/9999/messages")) == 1 and len(disabled_warnings(caplog)) == 1
        assert {r.id for r in svc.recipients()} == {"dc-channel-3333", "dc-4444"}
        # after a crash mid-send the bot can tell from the channel that it was delivered (no duplicate)
        sent_key = next(r["key"] for r in outbox(svc) if r["address"] == "3333")
        assert await svc.senders["discord-channel"].was_delivered(sent_key) is True
        assert await svc.senders["discord-channel"].was_delivered("1:dc-channel-3333:discord-channel:3333") is False
        await worker.deliver_due()
        assert len(server.channel_messages(3333)) == 1 and len(server.dm_messages(4444)) == 1
    finally:
        await adapter.stop()
        svc.store.close()


async def test_commands_sync_once_across_restarts_with_the_same_command_set(server, make_svc, monkeypatch):
    bot_env(monkeypatch, server)

    def puts() -> list:
        return [c for c in server.calls if c[0] == "PUT" and "/commands" in c[1]]

    for _ in range(2):
        svc = make_svc({"webhooks": []})
        adapter = await start_bot(svc)
        await adapter.stop()
        svc.store.close()
    assert len(puts()) == 1 and puts()[0][1] == f"/api/v10/applications/{server.application_id}/commands"
    # a different command set (guild-scoped, with the admin commands) syncs again, once
    for _ in range(2):
        svc = make_svc({"webhooks": [], "guild_id": server.guild_id})
        adapter = await start_bot(svc)
        await adapter.stop()
        svc.store.close()
    assert len(puts()) == 2 and puts()[1][1].endswith(f"/guilds/{server.guild_id}/commands")
    guild_cmds = {c["name"]: c for c in server.guild_commands()}
    assert str(guild_cmds["stats"]["default_member_permissions"]) == "8"              # administrators only


# ---------------------------------------------------------------------------------------------- secrets
async def test_tokens_never_appear_in_logs_at_debug(server, make_svc, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    bot_env(monkeypatch, server)
    hook_token = "whk-SECRET-3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c"
    hook_url = server.webhook_url(5700, hook_token, channel_id=3334)
    monkeypatch.setenv("DC_HOOK_SECRET", hook_url)
    svc = make_svc({"channels": [{"id": 3333}],
                              "webhooks": [{"name": "secret", "url_env": "DC_HOOK_SECRET"}]})
    adapter = await start_bot(svc)
    try:
        cycles = Cycles(svc)
        await cycles.run(CALM)
        await cycles.run(HOT)
        server.fail_next("/webhooks/5700/", 500, {"message": "boom", "code": 0})
        worker = make_worker(svc)
        await worker.deliver_due()                       # channel delivered, webhook 500 -> retry later
        svc.store.mark_outbox([r["id"] for r in outbox(svc) if r["status"] == "pending"], "pending", due=0)
        await worker.deliver_due()
        assert len(server.webhook_messages(5700)) == 1 and len(server.channel_messages(3333)) == 1
        await answer(server, "top")
    finally:
        await adapter.stop()
        svc.store.close()
    lines = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert len(lines) > 20 and any(r.levelno == logging.DEBUG for r in caplog.records)
    for secret in (BOT_TOKEN, hook_token, hook_url):
        assert not [ln for ln in lines if secret in ln]
    assert not [ln for ln in lines if "SECRET" in ln]


async def test_rejected_bot_token_turns_bot_mode_off_but_webhooks_keep_working(make_svc, monkeypatch, caplog):
    async with DiscordSimServer(bot_token="the-right-token-0123456789") as server:
        bot_env(monkeypatch, server)                       # BOT_TOKEN is not the one the server accepts
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.webhook_url())
        svc = make_svc({"channels": [{"id": 3333}]})
        adapter = add_adapter(svc, **FAST)
        await adapter.start()
        try:
            assert adapter.bot_failed and "discord-channel" not in svc.senders and "discord-dm" not in svc.senders
            assert [r.id for r in svc.recipients()] == ["dc-webhook-default"]
            assert any("rejected the bot token" in r.getMessage() for r in caplog.records)
            cycles = Cycles(svc)
            await cycles.run(CALM)
            await cycles.run(HOT)
            await make_worker(svc).deliver_due()
            assert len(server.webhook_messages(5555)) == 1 and server.channel_messages(3333)[0]["webhook_id"]
        finally:
            await adapter.stop()
            svc.store.close()
        assert BOT_TOKEN not in caplog.text


# ---------------------------------------------------------------------------------------------- structure
def test_every_chat_adapter_implements_the_one_protocol_the_app_registers():
    """(That nothing under bot/adapters/ or the command layer imports bot.app is the import-linter layers
    contract: tests/test_architecture.py.)"""
    from bot.adapters.base import ChatAdapter
    from bot.adapters.telegram import TelegramAdapter

    for cls in (TelegramAdapter, DiscordAdapter):
        assert all(callable(getattr(cls, m, None)) for m in ("start", "stop", "senders", "recipients", "disable_route"))
    assert issubclass(DiscordAdapter, ChatAdapter) and issubclass(TelegramAdapter, ChatAdapter)


# ------------------------------------------------------------------------------------------- closed signals
async def test_bot_perf_and_signals_slash_commands(server, make_svc, monkeypatch):
    """/perf and /signals as slash commands, over a signal the real Engine fired and a sealed closing."""
    bot_env(monkeypatch, server)
    svc = make_svc({"webhooks": []})
    cycles = Cycles(svc)
    await cycles.run(CALM)
    await cycles.run(HOT)
    [sig] = [g for g in svc.store.recent_signals(50) if g["symbol"] == "BTCUSDT" and g["kind"] == "threshold"][:1]
    sig = dict(sig, receipt=dict(sig["receipt"], raw={"mark_price": 100.0}))   # Cycles stores no raw values
    commit_sealed(svc, sig["ts"] + 3 * 3_600_000, closings=[closing_of(svc.cfg, sig, 0.05, sig["ts"] + 3 * 3_600_000)])
    adapter = await start_bot(svc)
    try:
        assert "perf" in {c["name"] for c in server.synced_commands}
        e = body_of(await answer(server, "perf", [{"name": "days", "value": "90"}]))["embeds"][0]
        assert e["title"] == "Performance" and "last 90 days" in e["description"]
        assert "Follow the bias: 1 trades" in e["description"]
        e = body_of(await answer(server, "signals"))["embeds"][0]
        assert sig["id"] in e["description"] and "TP1" in e["description"]
    finally:
        await adapter.stop()
        svc.store.close()
async def test_liqmap_slash_command_answers_with_the_heatmap_attached(server, make_svc, monkeypatch):
    from bot.demo_market.binance_server import BinanceSimServer
    from bot.demo_market.market import MarketSimulator
    from bot.exchange.binance import BinanceClient
    from bot.liqmap_feed import refresh
    bot_env(monkeypatch, server)
    svc = make_svc({"webhooks": []})
    sim = MarketSimulator(n_symbols=30, seed=7)
    async with BinanceSimServer(sim) as binance, BinanceClient(svc.cfg.exchange, base_url=binance.base_url) as client:
        await refresh(svc.cfg, client, svc.store, sim.now_ms())             # what the 2-minute job stores
    adapter = await start_bot(svc)
    try:
        assert [o["name"] for o in {c["name"]: c for c in server.synced_commands}["liqmap"]["options"]] == \
            ["symbol", "window"]
        res = await answer(server, "liqmap", [{"name": "symbol", "value": "eth"}, {"name": "window", "value": "4h"}])
        assert res[0]["type"] == 5                                             # slow: deferred first
        body = body_of(res)
        assert body["attachments"][0]["filename"] == "chart.png"
        e = body["embeds"][0]
        assert e["title"] == "ETHUSDT LiqMap (estimated) · last 4h" and e["image"]["url"] == "attachment://chart.png"
        assert "With ETH at $" in e["description"] and "no realised liquidations recorded" in e["description"]
        assert "a floor" in e["description"]
    finally:
        await adapter.stop()


# ------------------------------------------------------------------------------- the daily root (receipts.publish)
async def test_the_daily_root_goes_to_its_own_webhook_once_and_no_alert_goes_there(server, make_services, monkeypatch):
    """receipts.publish.discord_webhook_url_env: a webhook route that only the published root uses."""
    from bot.publication import RootPublisher, publish_routes
    from bot.sealing import Sealer
    monkeypatch.delenv("DISCORD_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("ROOTS_WEBHOOK", server.webhook_url(7777, "roottoken"))
    svc = make_services(Config.model_validate({"discord": {"webhooks": []},
                                               "receipts": {"publish": {"discord_webhook_url_env": "ROOTS_WEBHOOK"}}}),
                        universe=SYMBOLS)
    adapter = add_adapter(svc)
    await adapter.start()
    try:
        assert "webhook" in svc.senders and adapter.recipients() == []       # no alert is routed to it
        sealer, day = Sealer(svc.signing), 86_400_000
        pub = RootPublisher(svc.store, publish_routes(svc.cfg.receipts.publish))
        for ts in (1_760_000_000_000, 1_760_000_000_000 + day):              # the last cycle of a day, then the next
            svc.store.commit_alert_cycle(dict(ts=ts, duration_s=0.0, requests=0, weight=0, failed={}), [], {}, [], [],
                                         [], seal=sealer.prepare(ts, []))
            pub.after_cycle(ts)
        worker = make_worker(svc)
        assert await worker.deliver_due() == 1 and await worker.deliver_due() == 0
        [msg] = server.webhook_messages(7777)
        [embed] = msg["embeds"]
        root = svc.store.manifest_for(1_760_000_000_000)
        assert embed["title"] == "Signed root for 2025-10-09" and root["hash"] in embed["description"]
        assert root["manifest"]["root"] in embed["description"] and "roottoken" not in repr(adapter)
        assert {r["status"] for r in outbox(svc)} == {"sent"}
    finally:
        await adapter.stop()
        svc.store.close()
