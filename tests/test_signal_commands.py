"""/signals, /signal ID and /perf through the real chat adapters: Telegram (python-telegram-bot polling the loopback
Bot API) and Discord (discord.py on the loopback gateway), over signals committed, closed and sealed as the engine
does (the closing evaluated by bot.evaluation on constructed candles)."""
from __future__ import annotations

import pytest
from test_discord import (CALM, HOT, Cycles, answer, body_of, bot_env, clean_env, make_svc, server,  # noqa: F401
                          start_bot)
from test_telegram import close_env, logs, make_env, make_signal, say  # noqa: F401 (logs: a fixture)

from bot.config import Config
from bot.evaluation import HOUR_MS, Candle, evaluate
from bot.outcomes import costs_of, plan_for, signal_input
from bot.sealing import Sealer

M5 = 300_000


def closing_of(cfg: Config, sig: dict, move: float, now: int) -> dict:
    """The closing record of `sig` after one 5m candle that moves the price by `move` (ATR: 2 % of the entry)."""
    entry, t = sig["receipt"]["raw"]["mark_price"], sig["ts"]
    hourly = [Candle(t - (15 - i) * HOUR_MS, entry, entry * 1.01, entry * 0.99, entry, t - (14 - i) * HOUR_MS)
              for i in range(15)]
    end = entry * (1 + move)
    walk = [Candle(t, entry, max(entry, end), min(entry, end), end, t + M5)]
    out = evaluate(signal_input(sig), plan_for(cfg.evaluation, sig["kind"]), costs_of(cfg.evaluation), hourly, walk,
                   M5, [], now)
    assert out is not None
    return {"signal": sig["id"], "outcome": out}


def commit_sealed(svc, ts: int, signals=(), closings=()) -> None:
    sealer = Sealer(svc.signing)
    svc.store.commit_alert_cycle(dict(ts=ts, duration_s=0.0, requests=0, weight=0, failed={}), [], {}, list(signals),
                                 [], [], seal=sealer.prepare(ts, [], list(closings)), closings=list(closings))


async def test_telegram_signals_signal_and_perf(make_services, monkeypatch, logs):  # noqa: F811
    env = await make_env(make_services, monkeypatch, logs)
    try:
        assert (await say(env, "/signals")) == "No signals yet: they appear here once an alert rule fires."
        a, b, c = [r["symbol"] for r in env.results if r["bias"] != "NEUTRAL"][:3]   # signals with a direction
        won = make_signal(env, a, base=a, ts=env.ts - 3 * HOUR_MS)
        lost = make_signal(env, b, base=b, ts=env.ts - 3 * HOUR_MS)
        still_open = make_signal(env, c, base=c, ts=env.ts - HOUR_MS)
        commit_sealed(env.svc, env.ts - 3 * HOUR_MS, [won, lost])
        commit_sealed(env.svc, env.ts - HOUR_MS, [still_open])
        d = {"LONG": 1, "SHORT": -1}
        closings = [closing_of(env.svc.cfg, won, 0.05 * d[won["bias"]], env.ts),
                    closing_of(env.svc.cfg, lost, -0.05 * d[lost["bias"]], env.ts)]
        commit_sealed(env.svc, env.ts - 10 * M5, closings=closings)

        feed = await say(env, "/signals")
        assert feed.startswith("Recent market-wide signals")
        assert still_open["id"] in feed and "OPEN" in feed and "TP1" in feed and "SL" in feed

        text = await say(env, f"/signal {won['id']}")
        assert "Outcome: " in text and "follow" in text and "fade" in text and "net " in text
        assert "Proof:" in text and "Verifies: yes" in text

        perf = await say(env, "/perf")
        assert perf.startswith("Performance\n\nPerformance · last 30 days") and "2 closed, 1 open" in perf
        assert "Follow the bias:" in perf and "Fade the bias" in perf and "Score vs next 4h |move|" in perf
        one = await say(env, f"/perf {a.lower()} 90")
        assert f"Performance of {a} · last 90 days" in one and "1 closed, 0 open" in one
        assert (await say(env, "/perf 45")).startswith("Windows are 30, 90, 180 days")
    finally:
        await close_env(env)


async def test_discord_perf_and_signals(server, make_svc, monkeypatch):  # noqa: F811
    bot_env(monkeypatch, server)
    svc = make_svc({"webhooks": []})
    cycles = Cycles(svc)
    await cycles.run(CALM)
    await cycles.run(HOT)
    [sig] = [g for g in svc.store.recent_signals(50) if g["symbol"] == "BTCUSDT" and g["kind"] == "threshold"][:1]
    sig = dict(sig, receipt=dict(sig["receipt"], raw={"mark_price": 100.0}))   # Cycles stores no raw values
    commit_sealed(svc, sig["ts"] + 3 * HOUR_MS, closings=[closing_of(svc.cfg, sig, 0.05, sig["ts"] + 3 * HOUR_MS)])
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
