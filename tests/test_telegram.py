"""The Telegram adapter end to end: the REAL python-telegram-bot Application, polling the Bot-API-shaped loopback
server (fakes.telegram_server), with Services from the shared `make_services` fixture (app.build_services) over a
real scoring cycle against the Binance-shaped simulator (run once per session; each test starts from a copy of its
database: `scored_market`). Every update goes through getUpdates -> PTB handlers -> commands.dispatch -> Telegram
API calls; alerts go engine-style through the outbox and DeliveryWorker into TelegramSender.

Every test captures all log records at DEBUG (root, httpx, httpcore, telegram, aiohttp) and fails if the bot
token appears in any of them.
"""
from __future__ import annotations

import asyncio
import copy
import io
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import closing_of, commit_sealed
from conftest import until as wait_until

from bot import app as app_module
from bot.adapters.telegram import (MAX_TEXT, Block, TelegramAdapter, TelegramSender, digest_messages, pack,
                                   reply_messages, tg_len)
from bot.app import Services, build_services, delivery_worker, enable_chat_adapters
from bot.clock import FakeClock
from bot.commands import REGISTRY, Reply, Table, help_text, telegram_commands
from bot.config import Config, ExchangeConfig, TelegramConfig
from bot.cycle import run_cycle
from bot.engine import _receipt, signal_id
from bot.outbox import DeliveryWorker, Digest
from bot.rules import Event
from bot.demo_market.binance_server import BinanceSimServer
from bot.demo_market.market import MarketSimulator
from bot.store import Store
from fakes.telegram_server import ApiError, TelegramSimServer, parse_formatted_text
from bot.watchlists import WatchlistError, parse_watchlist

TOKEN = "123456:TEST-TOKEN-d3adb33f"
CHAT = 1001                     # a private chat (= the user's id)
OTHER = 2002                    # another user, not on the allowlist when there is one
ADMIN = 777                     # bot admin (telegram.admin_ids)
GROUP = -1001234567890          # a supergroup
GROUP_ADMIN, GROUP_MEMBER = 7, 8
PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = [pytest.mark.filterwarnings("ignore:Deprecated since version v22.2"),   # PTB's own RetryAfter.__init__
              pytest.mark.xdist_group("telegram")]   # one xdist worker: the session's scored market is made once
NOISY = ("httpx", "httpcore", "telegram", "telegram.ext", "aiohttp", "bot", "apscheduler")


# ------------------------------------------------------------------------------------------------------ harness
@dataclass
class Env:
    svc: Services
    tg: TelegramSimServer
    adapter: TelegramAdapter
    binance: BinanceSimServer
    wl_dir: Path
    ts: int
    results: list[dict]
    log: io.StringIO

    def wl_path(self, uid: str) -> Path:
        return self.wl_dir / f"{uid}.yaml"


@pytest.fixture
def logs():
    """Every log record at DEBUG, formatted (exceptions included), for the token check."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved = {n: logging.getLogger(n).level for n in NOISY}
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for n in NOISY:
        logging.getLogger(n).setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(root_level)
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)
    text = stream.getvalue()
    assert TOKEN not in text and "TEST-TOKEN" not in text, "the bot token leaked into a log line"


def env_config(allowed: list[int] | None = None, *, exchange_url: str | None = None) -> Config:
    return Config(exchange=ExchangeConfig(timeout_s=2.0, max_retries=1), universe={"min_quote_volume": 0},
                  telegram=TelegramConfig(api_base_url="https://api.telegram.invalid", allowed_user_ids=allowed or [],
                                          admin_ids=[ADMIN], poll_timeout_s=1))


@dataclass(frozen=True)
class ScoredMarket:
    """A database after one real cycle against the simulator, and that cycle's facts."""
    db: Path
    ts: int
    results: list[dict]
    symbols: frozenset[str]


@pytest.fixture(scope="session")
def scored_market(tmp_path_factory) -> ScoredMarket:
    """One real cycle (a cold start: 24 h of OI backfill) against the 30-symbol simulator, run once per session in
    a thread of its own: every env starts from a copy of its database, so /top, /score and /chart have data
    without each test paying for the cycle."""
    db = tmp_path_factory.mktemp("scored") / "bot.db"

    async def one_cycle() -> ScoredMarket:
        binance = BinanceSimServer(MarketSimulator(n_symbols=30, seed=3))
        svc = build_services(env_config(), str(db), db.parent / "watchlists", exchange_url=await binance.start())
        try:
            out = await run_cycle(svc.cfg, svc.client, svc.store)
        finally:
            await svc.client.aclose()
            svc.store.close()
            await binance.stop()
        return ScoredMarket(db, out.ts, out.result_dicts(), frozenset(r.symbol for r in out.results))

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(one_cycle())).result()


async def make_env(make_services, monkeypatch, logs: io.StringIO, market: ScoredMarket, *,
                   allowed: list[int] | None = None, fail_set_commands: bool = False) -> Env:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    for name in ("DISCORD_BOT_TOKEN", "DISCORD_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    binance = BinanceSimServer(MarketSimulator(n_symbols=30, seed=3))
    url = await binance.start()
    tg = TelegramSimServer(TOKEN)
    root = await tg.start()
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", root)    # the env var overrides telegram.api_base_url
    if fail_set_commands:
        tg.fail_next("setMyCommands", 500, "Internal Server Error", times=-1)
    svc = make_services(env_config(allowed), exchange_url=url, seed=market.db)     # after one real cycle
    await svc.refresh_market(market.symbols)                 # published, as run_bot does after each cycle
    enable_chat_adapters(svc)
    [adapter] = svc.adapters
    assert isinstance(adapter, TelegramAdapter) and svc.senders["telegram"] is adapter.sender
    await adapter.start()
    return Env(svc, tg, adapter, binance, svc.watchlists.directory, market.ts, copy.deepcopy(market.results), logs)


async def close_env(env: Env) -> None:
    await env.adapter.stop()
    await env.svc.client.aclose()
    env.svc.store.close()
    await env.tg.stop()
    await env.binance.stop()


@pytest.fixture
async def env(make_services, monkeypatch, logs, scored_market):
    e = await make_env(make_services, monkeypatch, logs, scored_market)
    yield e
    await close_env(e)


async def until(pred, timeout: float = 5.0, what: str = "condition", tg: TelegramSimServer | None = None):
    """conftest.until, naming the Bot API calls the fake saw last when it times out."""
    def recent() -> str:
        calls = [(m, {k: v for k, v in p.items() if k in ("chat_id", "text", "caption", "data")})
                 for m, p in (tg.calls if tg else []) if m != "getUpdates"]
        return f"recent calls: {calls[-8:]}"
    return await wait_until(pred, timeout, what, context=recent)


async def ask(env: Env, text: str, chat: int = CHAT, n: int = 1, **kw) -> list[dict]:
    """Send `text` as a user and return the bot's next `n` successful messages in that chat."""
    before = len(env.tg.sent(chat))
    env.tg.push_message(chat, text, **kw)
    await until(lambda: len(env.tg.sent(chat)) >= before + n, what=f"reply to {text!r}", tg=env.tg)
    return env.tg.sent(chat)[before:]


async def say(env: Env, text: str, chat: int = CHAT, **kw) -> str:
    """One reply's plain text (what the user sees), after checking it was sent as HTML."""
    [msg] = await ask(env, text, chat, **kw)
    assert msg["parse_mode"] == "HTML"
    return msg["plain"]


def make_signal(env: Env, symbol: str | None = None, *, base: str = "BTCUSDT", threshold: int = 60,
                prev: int = 50, ts: int | None = None) -> dict:
    r = dict(next(x for x in env.results if x["symbol"] == base))
    sym = symbol or base
    r["symbol"] = sym
    ev = Event(sym, f"cross:{threshold}", "threshold", r["score"], prev, r, threshold=threshold)
    ts = ts or env.ts
    return dict(id=signal_id(ts, sym, ev.rule), ts=ts, symbol=sym, rule=ev.rule, kind=ev.kind, score=r["score"],
                bias=r["bias"], regime=r["regime"], receipt=_receipt(ev))


def queue_alerts(env: Env, signals: list[dict], chat: int = CHAT, recipient: str | None = None,
                 key: str = "k1") -> str:
    """What the engine commits for one cycle: signals and one outbox row for the recipient's Telegram chat."""
    recipient = recipient or f"tg-{chat}"
    now = int(time.time() * 1000)
    row = dict(key=f"{key}:{recipient}:telegram:{chat}", recipient=recipient, channel="telegram", address=str(chat),
               created=now, due=now, signal_ids=[s["id"] for s in signals])
    cycle = dict(ts=env.ts - 600_000, duration_s=0.0, requests=0, weight=0, failed={})
    env.svc.store.commit_alert_cycle(cycle, [], {}, signals, [], [row])
    return row["key"]


def worker(env: Env, clock: FakeClock | None = None) -> DeliveryWorker:
    """The app's delivery worker; with `clock`, it and the Telegram sender's flood control run on that clock
    (rows queued by `queue_alerts` are due at once on a clock made after them)."""
    if clock is None:
        return delivery_worker(env.svc)
    env.adapter.sender.clock = clock
    return delivery_worker(env.svc, clock)


def outbox(env: Env, key: str) -> dict:
    row = env.svc.store.outbox_row(key)
    assert row is not None, f"no outbox row {key!r}"
    return row


# ------------------------------------------------------------------------------------------- pure rendering
def test_pack_splits_on_lines_never_inside_tags():
    rows = [(str(i), f"SYM{i}_USDT", "<&>" * 5, "x" * 40) for i in range(400)]
    reply = Reply(title="Big <table>", table=Table(("#", "Symbol", "Odd", "Pad"), rows, "caption & more"),
                  text="tail line\n" * 300)
    messages = reply_messages(reply)
    assert len(messages) > 3
    plain = []
    for m in messages:
        assert tg_len(m) <= MAX_TEXT
        text, _ = parse_formatted_text(m, "HTML")          # the simulator's tdlib-like parser: valid HTML
        plain.append(text)
    joined = "\n".join(plain)
    assert all(f"SYM{i}_USDT" in joined for i in range(400))
    assert joined.count("tail line") == 300 and "Big <table>" in joined
    # one overlong line is hard-cut into valid pieces too (markup counts against the limit: always under it)
    parts = pack([Block([("&" * 5000, "b")])])
    assert len(parts) > 1 and all(tg_len(p) <= MAX_TEXT for p in parts)
    assert sum(len(parse_formatted_text(p, "HTML")[0]) for p in parts) == 5000


# ----------------------------------------------------------------------------------------------- commands
async def test_start_help_and_command_menu(env):
    assert not env.wl_path(f"tg-{CHAT}").exists()
    text = await say(env, "/start")
    assert text.startswith("Welcome! Your watchlist is set up.") and "/watch BTC ETH" in text
    wl = env.svc.watchlists.get(f"tg-{CHAT}")
    assert env.wl_path(f"tg-{CHAT}").exists() and wl.telegram_chat_id == CHAT and wl.name == "Alice"
    assert (await say(env, "/start")).startswith("Welcome back")
    assert await say(env, "/help") == help_text(False)
    assert "/stats" not in help_text(False)
    # setMyCommands from the registry; admins get the admin commands in their own chat
    assert [(c["command"], c["description"]) for c in env.tg.commands] == telegram_commands()
    scoped = [c for c in env.tg.calls_of("setMyCommands") if c.get("scope")]
    assert scoped and scoped[0]["scope"] == {"type": "chat", "chat_id": ADMIN}
    assert {c["command"] for c in scoped[0]["commands"]} == set(REGISTRY)


async def test_top_with_buttons_edits_in_place(env):
    [msg] = await ask(env, "/top")
    assert msg["text"].startswith("<b>Top 15 · All</b>\nUpdated ") and "<pre>" in msg["text"]
    assert "30 symbols ranked" in msg["plain"]
    buttons = msg["reply_markup"]["inline_keyboard"][0]
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        ("All", "top all 15"), ("Long bias", "top long 15"), ("Short bias", "top short 15")]

    n_sent = len(env.tg.sent(CHAT))
    env.tg.push_callback(CHAT, msg["message_id"], "top long 15")
    await until(lambda: env.tg.edits and env.tg.callback_answers, what="edit + answer", tg=env.tg)
    [edit] = env.tg.edits
    assert edit["message_id"] == msg["message_id"] and edit["method"] == "editMessageText"
    assert edit["plain"].startswith("Top ") and "Long bias" in edit["plain"].split("\n")[0]
    rows = [line for line in edit["plain"].split("\n") if line[:3].strip().isdigit()]
    assert rows and all(" LONG " in r for r in rows)
    assert edit["reply_markup"] == msg["reply_markup"]          # buttons stay for the next press
    assert env.tg.message(CHAT, msg["message_id"])["text"] == edit["plain"]
    assert len(env.tg.sent(CHAT)) == n_sent                    # edited in place, nothing new sent

    # pressing the same button again: "message is not modified" is not an error; the press is still answered
    env.tg.push_callback(CHAT, msg["message_id"], "top long 15")
    await until(lambda: len(env.tg.callback_answers) == 2, what="second answer", tg=env.tg)
    await asyncio.sleep(0.1)
    assert len(env.tg.edits) == 1 and "error handling an update" not in env.log.getvalue()

    # a forged button (callback data is client-controlled) goes through the same checks
    env.tg.push_callback(CHAT, msg["message_id"], "stats")
    await until(lambda: len(env.tg.callback_answers) == 3, what="third answer", tg=env.tg)
    assert env.tg.callback_answers[-1]["text"] == "That command is for the bot's admins."


async def test_score_symbol_forms_and_suggestions(env):
    texts = [await say(env, f"/score {s}") for s in ("btc", "BTC", "BTCUSDT")]
    assert texts[0] == texts[1] == texts[2]
    body = texts[0]
    assert body.startswith("BTCUSDT · ") and "Regime:" in body and "Why:" in body and "Contributions" in body
    r = next(x for x in env.results if x["symbol"] == "BTCUSDT")
    assert f"score {r['score']} ({r['band']})" in body
    assert await say(env, "/score BTCC") == "Unknown symbol 'BTCC'. Did you mean BTCUSDT?"
    assert await say(env, "/score") == "Usage: /score SYMBOL (e.g. /score BTC)"
    assert (await say(env, "/wach BTC")) == "Unknown command /wach. Did you mean /watch?"
    assert (await say(env, "/Score eth")).startswith("ETHUSDT · ")     # command names are case-insensitive


async def test_market_commands_never_wait_for_the_store(env):
    """/top, /score and /watchlist answer from the published snapshot: a commit holding the store's lock in
    another thread (as the engine's does) never stalls them."""
    await say(env, "/start")
    await say(env, "/watch btc")
    held, release = threading.Event(), threading.Event()

    def commit_in_progress():
        with env.svc.store._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=commit_in_progress)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        [top] = await ask(env, "/top")
        assert "30 symbols ranked" in top["plain"]
        assert (await say(env, "/score btc")).startswith("BTCUSDT · ")
        assert "BTCUSDT" in await say(env, "/watchlist")
        assert time.monotonic() - started < 5 and holder.is_alive()     # answered while the lock was held
    finally:
        release.set()
        holder.join()


async def test_watchlist_editing_commands(env):
    uid = f"tg-{CHAT}"
    assert (await say(env, "/watchlist")) == "You have no watchlist yet: send /start first."
    await say(env, "/start")
    text = await say(env, "/watch btc eth doge xyzq")
    assert "Added: BTCUSDT, ETHUSDT, DOGEUSDT." in text and "Unknown symbol 'xyzq'" in text
    assert await say(env, "/unwatch doge") == "Removed: DOGEUSDT.\nWatching 2: BTCUSDT, ETHUSDT."
    assert env.svc.watchlists.get(uid).symbols == ["BTCUSDT", "ETHUSDT"]
    [msg] = await ask(env, "/watchlist")
    assert "<pre>" in msg["text"] and "BTCUSDT" in msg["plain"] and "Alerts on" in msg["plain"]
    assert (await say(env, "/threshold 50")).startswith("Your alert threshold is now 50")
    assert await say(env, "/threshold 150") == "Threshold must be a whole number 0-100, got '150'."
    assert await say(env, "/alerts off") == "Alerts are off."
    assert env.svc.watchlists.get(uid).alerts is False
    assert await say(env, "/alerts on") == "Alerts are on."
    assert (await say(env, "/quiet 23:00-07:00 Europe/Berlin")) == (
        "Quiet hours 23:00-07:00 Europe/Berlin: alerts in that window are held and sent as one digest when they end.")
    assert (await say(env, "/mute BTC 2h")).startswith("BTCUSDT muted until ")
    wl = env.svc.watchlists.get(uid)
    assert (wl.min_score, wl.alerts, wl.quiet_hours, wl.timezone) == (50, True, "23:00-07:00", "Europe/Berlin")
    assert "BTCUSDT" in wl.muted
    saved = env.wl_path(uid).read_text()
    assert saved.startswith("# Watchlist:") and "min_score: 50" in saved        # the file itself, comments kept
    assert re.search(r"\n  BTCUSDT: 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", saved)   # muted until (UTC)
    # a refused edit answers with the reason and leaves the file alone
    before = env.wl_path(uid).read_bytes()
    assert "unknown time zone" in await say(env, "/quiet 22:00-06:00 Europe/Berlln")
    assert env.wl_path(uid).read_bytes() == before


async def test_methodology_chart_and_admin_commands(env):
    text = await say(env, "/methodology")
    assert text.startswith("Methodology\n\nHow to read the score") and "Bands:" in text

    before = len(env.tg.sent(CHAT))
    env.tg.push_message(CHAT, "/chart btc")
    await until(lambda: len(env.tg.sent(CHAT)) > before, timeout=15, what="chart", tg=env.tg)
    [photo] = env.tg.sent(CHAT)[before:]
    assert photo["method"] == "sendPhoto" and photo["photo"].startswith(PNG) and len(photo["photo"]) > 5000
    assert photo["caption"].startswith("<b>BTCUSDT · last 48h</b>") and photo["mime_type"] == "image/png"

    assert await say(env, "/stats") == "That command is for the bot's admins."
    assert await say(env, "/reload") == "That command is for the bot's admins."
    await say(env, "/start", chat=ADMIN)
    stats = await say(env, "/stats", chat=ADMIN)
    assert stats.startswith("Users: 1 (1 with alerts on)") and "Last cycle:" in stats
    assert await say(env, "/reload", chat=ADMIN) == "Reloaded 1 watchlists."
    assert "/stats" in await say(env, "/help", chat=ADMIN)


async def test_export_then_import_good_bad_and_oversized(env):
    uid = f"tg-{CHAT}"
    await say(env, "/start")
    await say(env, "/watch BTC")
    [doc] = await ask(env, "/export")
    assert doc["method"] == "sendDocument" and doc["file_name"] == f"{uid}.yaml"
    assert doc["document"] == env.wl_path(uid).read_bytes()
    assert doc["caption"].startswith("Your watchlist.")

    # good: the user edits the exported file, uploads it and replies /import to it
    good = doc["document"].decode().replace("symbols: [BTCUSDT]", "symbols: [BTCUSDT, SOLUSDT]")
    assert good != doc["document"].decode()
    upload = env.tg.push_message(CHAT, "", document=env.tg.add_file(good.encode(), "mine.yaml"))["message"]
    text = await say(env, "/import", reply_to={"message_id": upload["message_id"]})
    assert text == "Imported: watching 2 symbol(s): BTCUSDT, SOLUSDT."
    assert env.svc.watchlists.get(uid).symbols == ["BTCUSDT", "SOLUSDT"]
    saved = env.wl_path(uid).read_text()
    assert saved.startswith("# Watchlist:") and "symbols: [BTCUSDT, SOLUSDT]         # watched symbols" in saved

    # bad: the exact validation error, and the file is unchanged
    bad = good.replace("cooldown_minutes: 60", "cooldown_minutes: soon").replace("SOLUSDT]", "SOLUSDT, BTX]")
    with pytest.raises(WatchlistError) as expected:
        parse_watchlist(bad, "import", universe=env.svc.market.current().universe)
    before = env.wl_path(uid).read_bytes()
    upload = env.tg.push_message(CHAT, "", document=env.tg.add_file(bad.encode(), "bad.yaml"))["message"]
    text = await say(env, "/import", reply_to={"message_id": upload["message_id"]})
    assert text == f"Your watchlist was not changed:\n{expected.value}"
    assert "cooldown_minutes: expected a whole number" in text and 'unknown symbol "BTX"' in text
    assert env.wl_path(uid).read_bytes() == before

    # the document can also carry /import as its caption
    third = good.replace("[BTCUSDT, SOLUSDT]", "[ETHUSDT]")
    before_msgs = len(env.tg.sent(CHAT))
    env.tg.push_message(CHAT, "/import", document=env.tg.add_file(third.encode(), "w.yaml"))
    await until(lambda: len(env.tg.sent(CHAT)) > before_msgs, what="caption import", tg=env.tg)
    assert env.tg.sent(CHAT)[-1]["plain"] == "Imported: watching 1 symbol(s): ETHUSDT."

    # oversized: refused from the declared size, never downloaded
    downloads = len(env.tg.downloads)
    big = env.tg.add_file(b"# x\n" * 20_000, "huge.yaml")
    upload = env.tg.push_message(CHAT, "", document=big)["message"]
    text = await say(env, "/import", reply_to={"message_id": upload["message_id"]})
    assert text == "That file is too large to import (80000 bytes; a watchlist is at most 65536 bytes)."
    assert len(env.tg.downloads) == downloads
    assert await say(env, "/import") == "Reply /import to a YAML document (for example the file /export sent you)."


async def test_group_watchlist_needs_a_chat_admin(env):
    env.tg.set_admins(GROUP, [GROUP_ADMIN])
    gid = f"tg-g{abs(GROUP)}"
    kw = dict(chat=GROUP, chat_type="supergroup")
    text = await say(env, "/watch BTC", user_id=GROUP_MEMBER, **kw)
    assert text == "Only this group's admins can change its watchlist."
    assert not env.wl_path(gid).exists()
    # reading is for everyone
    assert (await say(env, "/score eth", user_id=GROUP_MEMBER, **kw)).startswith("ETHUSDT · ")
    text = await say(env, "/watch BTC SOL", user_id=GROUP_ADMIN, **kw)
    assert text.startswith("Added: BTCUSDT, SOLUSDT.")
    wl = env.svc.watchlists.get(gid)
    assert wl.telegram_chat_id == GROUP and wl.name == f"Supergroup {GROUP}"
    assert await say(env, "/threshold 40", user_id=GROUP_MEMBER, **kw) == (
        "Only this group's admins can change its watchlist.")
    assert env.svc.watchlists.get(gid).min_score is None
    checks = [c for c in env.tg.calls_of("getChatMember")]
    assert {c["user_id"] for c in checks} == {GROUP_ADMIN, GROUP_MEMBER}
    # replies in groups quote the command; unknown commands are only answered when addressed to the bot
    before = len(env.tg.sent(GROUP))
    env.tg.push_message(GROUP, "/frobnicate", user_id=GROUP_MEMBER, chat_type="supergroup")
    env.tg.push_message(GROUP, "/top@some_other_bot", user_id=GROUP_MEMBER, chat_type="supergroup")
    assert (await say(env, "/wach@pressure_test_bot", user_id=GROUP_MEMBER, **kw)) == (
        "Unknown command /wach. Did you mean /watch?")
    assert len(env.tg.sent(GROUP)) == before + 1                # the first two were ignored (same-chat order)
    assert env.tg.sent(GROUP)[-1]["params"]["reply_parameters"]


async def test_allowlist_refuses_strangers(make_services, monkeypatch, logs, scored_market):
    env = await make_env(make_services, monkeypatch, logs, scored_market, allowed=[CHAT])
    try:
        assert (await say(env, "/start")).startswith("Welcome!")
        text = await say(env, "/top", chat=OTHER)
        assert text.startswith(f"Sorry, this bot is private. Your Telegram user id is {OTHER}")
        assert not env.wl_path(f"tg-{OTHER}").exists()
        assert (await say(env, "/start", chat=ADMIN)).startswith("Welcome!")   # admins are always allowed
        [top] = await ask(env, "/top")
        env.tg.push_callback(CHAT, top["message_id"], "top short 15", user_id=OTHER)
        await until(lambda: env.tg.callback_answers, what="refusal answer", tg=env.tg)
        assert env.tg.callback_answers[0]["text"] == "Sorry, this bot is private."
        await asyncio.sleep(0.1)
        assert env.tg.edits == []
        assert f"refused user {OTHER}" in env.log.getvalue()
    finally:
        await close_env(env)


async def test_error_handler_logs_and_apologises(env):
    def broken():
        raise RuntimeError("store exploded")
    env.svc.queries.snapshot = broken                       # what /top reads: the published market snapshot
    text = await say(env, "/top")
    assert text == "Sorry, something went wrong on my side; it has been logged. Please try again in a minute."
    log = env.log.getvalue()
    assert "telegram: error handling an update: RuntimeError: store exploded" in log
    assert "Traceback" in log


async def test_set_my_commands_failure_is_tolerated(make_services, monkeypatch, logs, scored_market):
    env = await make_env(make_services, monkeypatch, logs, scored_market, fail_set_commands=True)
    try:
        assert env.tg.commands == []
        assert "setMyCommands failed" in env.log.getvalue()
        assert (await say(env, "/start")).startswith("Welcome!")
    finally:
        await close_env(env)


# --------------------------------------------------------------------------------------------------- alerts
async def test_alert_digest_is_escaped_and_signals_are_listed(env):
    await say(env, "/start")
    sigs = [make_signal(env, "1000PEPE_USDT", base="1000PEPEUSDT"), make_signal(env, "A<B&C>USDT"),
            make_signal(env)]
    key = queue_alerts(env, sigs)
    assert await worker(env).deliver_due() == 1
    [msg] = env.tg.sent(CHAT)[-1:]
    assert msg["parse_mode"] == "HTML" and "A&lt;B&amp;C&gt;USDT" in msg["text"]
    plain = msg["plain"]
    assert plain.startswith("🔔 3 alerts\n\n")
    assert "1000PEPE_USDT" in plain and "A<B&C>USDT" in plain
    for s in sigs:
        assert f"signal {s['id']}" in plain
    assert {"type": "bold", "offset": 0, "length": tg_len("🔔 3 alerts")} in msg["entities"]
    assert outbox(env, key)["status"] == "sent"

    table = await say(env, "/signals")
    assert table.startswith("Your recent signals") and all(s["id"] in table for s in sigs)
    receipt = await say(env, f"/signal {sigs[1]['id'].lower()}")
    assert receipt.startswith(f"Signal {sigs[1]['id']}\n\nSignal {sigs[1]['id']} · ")
    assert "A<B&C>USDT" in receipt and "Score inputs:" in receipt and "Contributions (points):" in receipt
    assert await say(env, "/signal NOPE") == "No signal 'NOPE'. /signals lists yours."


async def test_a_notice_is_sent_once_as_html_and_is_not_a_signal(env):
    """A notice row (no signal ids) goes through the same worker and TelegramSender: bold title, escaped text."""
    from bot.outbox import notice_entries
    await say(env, "/start")
    notice = {"kind": "root", "title": "Signed root 2027-01-14", "text": "root a<b>&c\npython -m bot verify"}
    [entry] = notice_entries(notice, "2027-01-14", [(f"tg-{CHAT}", "telegram", str(CHAT))], int(time.time() * 1000))
    assert env.svc.store.enqueue_notices([entry, entry]) == 1
    before = len(env.tg.sent(CHAT))
    w = worker(env)
    assert await w.deliver_due() == 1 and await w.deliver_due() == 0
    [msg] = env.tg.sent(CHAT)[before:]
    assert msg["parse_mode"] == "HTML" and msg["plain"] == "Signed root 2027-01-14\n\nroot a<b>&c\npython -m bot verify"
    assert {"type": "bold", "offset": 0, "length": tg_len("Signed root 2027-01-14")} in msg["entities"]
    assert outbox(env, entry["key"])["status"] == "sent"
    assert "Signed root" not in await say(env, "/signals")                 # a notice is never a signal


async def test_digest_split_at_4096_on_line_boundaries(env):
    await say(env, "/start")
    sigs = [make_signal(env, f"S{i:03d}_USDT", ts=env.ts - i) for i in range(60)]
    digest = Digest(f"tg-{CHAT}", ["x"], sigs)
    expected = digest_messages(digest)
    assert len(expected) >= 3
    key = queue_alerts(env, sigs)
    before = len(env.tg.sent(CHAT))
    await worker(env).deliver_due()
    sent = env.tg.sent(CHAT)[before:]
    assert [m["text"] for m in sent] == expected
    plain = "\n".join(m["plain"] for m in sent)
    assert all(len(m["plain"]) <= 4096 for m in sent) and max(len(m["text"]) for m in sent) > 3000
    for s in sigs:                                            # every alert exactly once, title and details together
        assert plain.count(f"signal {s['id']}") == 1
    for m in sent[1:]:
        assert m["plain"].startswith("S") or m["plain"].startswith("/signal")
    assert outbox(env, key)["status"] == "sent"


async def test_429_keeps_the_message_and_delivers_it_once_later(env):
    await say(env, "/start")
    sigs = [make_signal(env, "ETHUSDT", base="ETHUSDT")]
    env.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=CHAT)
    key = queue_alerts(env, sigs)
    clock = FakeClock(time=time.time())
    started_ms = int(clock.time() * 1000)
    w = worker(env, clock)
    stop = asyncio.Event()
    before = len(env.tg.sent(CHAT))
    task = asyncio.create_task(w.run(stop, poll_s=0.05))
    try:
        await until(lambda: outbox(env, key)["last_error"], what="429 recorded")
        row = outbox(env, key)
        assert row["status"] == "pending" and "retry after 1s" in row["last_error"]
        assert row["due"] == started_ms + 1000                 # retry_after, on the worker's clock
        polls = len(env.tg.calls_of("sendMessage"))
        clock.advance(0.9)
        for _ in range(3):                                     # the loop runs, but the row is not due yet
            w.wake()
            await asyncio.sleep(0.05)
        assert len(env.tg.sent(CHAT)) == before and len(env.tg.calls_of("sendMessage")) == polls
        assert outbox(env, key)["status"] == "pending"
        clock.advance(0.1)
        w.wake()
        await until(lambda: outbox(env, key)["status"] == "sent", timeout=5, what="delivery after retry_after")
    finally:
        stop.set()
        w.wake()
        await task
    sent = env.tg.sent(CHAT)[before:]
    assert len(sent) == 1 and f"signal {sigs[0]['id']}" in sent[0]["plain"]
    attempts = [c for c in env.tg.calls_of("sendMessage") if f"signal {sigs[0]['id']}" in c["text"]]
    assert len(attempts) == 2                                  # the 429, then the one delivery


async def test_429_on_a_later_part_never_repeats_earlier_parts(env):
    await say(env, "/start")
    sigs = [make_signal(env, f"P{i:03d}USDT", ts=env.ts - 100 - i) for i in range(40)]
    key = queue_alerts(env, sigs, key="split")
    parts = digest_messages(Digest(f"tg-{CHAT}", [key], env.svc.store.signals([s["id"] for s in sigs])))
    assert len(parts) >= 2
    before = len(env.tg.sent(CHAT))
    orig = env.tg._api_sendMessage
    calls = {"n": 0}

    def second_fails(p, files):                               # the 2nd part hits flood control once
        calls["n"] += 1
        if calls["n"] == 2:
            from fakes.telegram_server import ApiError
            raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        return orig(p, files)
    env.tg._methods["sendmessage"] = ("sendMessage", second_fails)
    clock = FakeClock(time=time.time())
    w = worker(env, clock)
    await w.deliver_due()
    assert outbox(env, key)["status"] == "pending" and len(env.tg.sent(CHAT)) == before + 1
    assert outbox(env, key)["parts_sent"] == 1                 # the progress is the row's, in the store
    await w.deliver_due()                                      # not due yet: nothing is sent early
    assert len(env.tg.sent(CHAT)) == before + 1 and calls["n"] == 2
    clock.advance(1.0)
    await w.deliver_due()                                      # retry_after has passed (worker and sender)
    assert outbox(env, key)["status"] == "sent" and outbox(env, key)["parts_sent"] == len(parts)
    sent = [m["text"] for m in env.tg.sent(CHAT)[before:]]
    assert sent == parts                                      # each part exactly once, in order


async def test_kill_between_parts_resumes_after_restart_with_the_rest_only(env):
    """The delivery is killed while part 2 of a three-part digest is in flight (part 1 accepted and recorded);
    a new worker and sender on the same database file (a restart) send parts 2 and 3 only: the chat gets
    every part exactly once, in order."""
    await say(env, "/start")
    sigs = [make_signal(env, f"K{i:03d}USDT", ts=env.ts - 200 - i) for i in range(45)]
    key = queue_alerts(env, sigs, key="kill")
    parts = digest_messages(Digest(f"tg-{CHAT}", [key], env.svc.store.signals([s["id"] for s in sigs])))
    assert len(parts) == 3
    before = len(env.tg.sent(CHAT))
    orig = env.tg._api_sendMessage
    attempts: list[str] = []
    gate = asyncio.Event()

    async def second_hangs(p, files):                         # part 2 never gets an answer: the bot dies first
        attempts.append(p["text"])
        if len(attempts) == 2:
            await gate.wait()
            raise ApiError(502, "Bad Gateway: nobody is listening any more")
        with env.tg._lock:
            return orig(p, files)
    env.tg._methods["sendmessage"] = ("sendMessage", second_hangs)

    stop = asyncio.Event()
    task = asyncio.create_task(worker(env).run(stop, poll_s=0.05))
    try:
        await until(lambda: len(attempts) == 2, what="part 2 in flight", tg=env.tg)
        row = outbox(env, key)
        assert row["status"] == "sending" and row["parts_sent"] == 1 and row["digest_key"] == key
        task.cancel()                                          # the kill: nothing more runs or commits
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gate.set()
    assert [m["text"] for m in env.tg.sent(CHAT)[before:]] == parts[:1]
    env.tg._methods["sendmessage"] = ("sendMessage", orig)

    # the restart: a new store connection on the same file, a new sender, a new worker (recover, then deliver)
    store = Store(env.svc.store.path)
    try:
        sender = TelegramSender(lambda: env.adapter.bot, {}, env.adapter._migrated)
        restarted = DeliveryWorker(store, {"telegram": sender})
        stop = asyncio.Event()
        task = asyncio.create_task(restarted.run(stop, poll_s=0.05))
        try:
            await until(lambda: store.outbox_row(key)["status"] == "sent", what="resumed delivery", tg=env.tg)
        finally:
            stop.set()
            restarted.wake()
            await task
        row = store.outbox_row(key)
        assert row["parts_sent"] == 3 and restarted.sent_parts == 2
    finally:
        store.close()
    sent = [m["text"] for m in env.tg.sent(CHAT)[before:]]
    assert sent == parts                                       # part 1 once, then parts 2 and 3, in order
    assert attempts == [parts[0], parts[1]]                    # before the kill: part 1, part 2 (never answered)
    resumed = [c["text"] for c in env.tg.calls_of("sendMessage") if c["text"] in parts][2:]
    assert resumed == parts[1:]                                # after the restart: parts 2 and 3 only


async def test_403_marks_the_recipient_inactive_and_stops_sending(env):
    await say(env, "/start")
    uid = f"tg-{CHAT}"
    env.tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=CHAT)
    key = queue_alerts(env, [make_signal(env)])
    w = worker(env)
    await w.deliver_due()
    row = outbox(env, key)
    assert row["status"] == "failed" and row["last_error"] == "Forbidden: Forbidden: bot was blocked by the user"
    await until(lambda: env.svc.watchlists.get(uid).active is False, what="watchlist inactive")
    assert "active: false" in env.wl_path(uid).read_text()
    assert CHAT in env.adapter.disabled
    # nothing more is sent there: a later digest fails at once, without an API call
    calls = len(env.tg.calls_of("sendMessage"))
    key2 = queue_alerts(env, [make_signal(env, "SOLUSDT", base="SOLUSDT")], key="k2")
    await w.deliver_due()
    assert outbox(env, key2)["status"] == "failed" and len(env.tg.calls_of("sendMessage")) == calls
    # the engine no longer routes alerts there (inactive subscriber)
    assert all(not r.subscriber.active for r in env.svc.recipients() if r.id == uid)
    # the user unblocks the bot and says /start: sending resumes
    assert (await say(env, "/start")).startswith("Welcome back")
    assert env.svc.watchlists.get(uid).active is True and CHAT not in env.adapter.disabled


async def test_network_errors_and_bad_chats_map_to_the_outbox_contract(env):
    await say(env, "/start")
    w = worker(env)
    env.tg.fail_next("sendMessage", 502, "Bad Gateway", chat_id=CHAT)
    key = queue_alerts(env, [make_signal(env)], key="net")
    await w.deliver_due()
    row = outbox(env, key)
    assert row["status"] == "pending" and row["attempts"] == 1 and "NetworkError" in row["last_error"]
    env.tg.fail_next("sendMessage", 400, "Bad Request: chat not found", chat_id=4444)
    key2 = queue_alerts(env, [make_signal(env)], chat=4444, key="gone")
    await w.deliver_due()
    assert outbox(env, key2)["status"] == "failed" and "Chat not found" in outbox(env, key2)["last_error"]


async def test_run_bot_starts_and_stops_the_adapter_in_one_loop(make_services, monkeypatch, logs, scored_market):
    env = await make_env(make_services, monkeypatch, logs, scored_market)
    await env.adapter.stop()                                   # run_bot starts it itself
    stop = asyncio.Event()
    task = asyncio.create_task(app_module.run_bot(env.svc, stop, show_table=False))
    try:
        # run_bot logs "engine started" after every adapter's start() returned (polling, pending updates dropped)
        await until(lambda: "engine started" in env.log.getvalue(), what="run_bot started")
        assert env.adapter.app is not None and env.adapter.app.updater.running
        assert (await say(env, "/start")).startswith("Welcome")
    finally:
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, timeout=12)
    assert time.monotonic() - started < 10
    assert env.adapter.app is None
    n = len(env.tg.calls_of("getUpdates"))
    await asyncio.sleep(0.3)
    assert len(env.tg.calls_of("getUpdates")) == n             # polling really stopped
    await env.tg.stop()
    await env.binance.stop()


async def test_token_is_redacted_from_debug_logs(env):
    await say(env, "/start")
    await worker(env).deliver_due()
    text = env.log.getvalue()
    assert "HTTP Request: POST" in text and "/bot***/getUpdates" in text     # httpx URL lines were captured
    assert "Calling Bot API endpoint" in text                                 # PTB's DEBUG output too
    assert TOKEN not in text
    assert TOKEN not in repr(env.adapter) and TOKEN not in str(env.adapter)


# ------------------------------------------------------------------------------------------- closed signals
async def test_signals_signal_and_perf_show_outcomes_and_proofs(make_services, monkeypatch, logs, scored_market):
    """/signals lists open and closed signals market-wide (the user has none), /signal ID shows the outcome and
    the proof, /perf the report; closings made by bot.evaluation and sealed as the engine does."""
    H = 3_600_000
    env = await make_env(make_services, monkeypatch, logs, scored_market)
    try:
        assert (await say(env, "/signals")) == "No signals yet: they appear here once an alert rule fires."
        a, b, c = [r["symbol"] for r in env.results if r["bias"] != "NEUTRAL"][:3]   # signals with a direction
        won = make_signal(env, a, base=a, ts=env.ts - 3 * H)
        lost = make_signal(env, b, base=b, ts=env.ts - 3 * H)
        still_open = make_signal(env, c, base=c, ts=env.ts - H)
        commit_sealed(env.svc, env.ts - 3 * H, [won, lost])
        commit_sealed(env.svc, env.ts - H, [still_open])
        d = {"LONG": 1, "SHORT": -1}
        closings = [closing_of(env.svc.cfg, won, 0.05 * d[won["bias"]], env.ts),
                    closing_of(env.svc.cfg, lost, -0.05 * d[lost["bias"]], env.ts)]
        commit_sealed(env.svc, env.ts - 600_000, closings=closings)

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
async def test_liqmap_answers_with_the_heatmap_and_the_text_read(env):
    from bot.demo_market.liquidations import force_orders
    from bot.exchange.force_orders import parse_force_order
    from bot.liqmap_feed import refresh
    sim = env.binance.sim
    await refresh(env.svc.cfg, env.svc.client, env.svc.store, sim.now_ms())      # what the 2-minute job stores
    env.svc.store.add_liq_prints(parse_force_order(e) for e in force_orders(sim, "ETHUSDT", sim.now_ms() - 86_400_000,
                                                                             sim.now_ms()))
    before = len(env.tg.sent(CHAT))
    env.tg.push_message(CHAT, "/liqmap eth")
    await until(lambda: any("a floor" in m.get("plain", m.get("caption", "")) for m in env.tg.sent(CHAT)[before:]),
                timeout=20, what="liqmap", tg=env.tg)
    photo, *rest = env.tg.sent(CHAT)[before:]
    assert photo["method"] == "sendPhoto" and photo["photo"].startswith(PNG) and len(photo["photo"]) > 20_000
    assert photo["caption"].startswith("<b>ETHUSDT LiqMap (estimated) · last 24h</b>")
    read = " ".join(m.get("plain", m.get("caption", "")) for m in [photo, *rest])
    assert "With ETH at $" in read and "nearest large liquidation cluster below price sits at $" in read
    assert "fell inside the top-25% estimated bands" in read and "Bias:" in read
    assert "The LiqMap covers BTCUSDT, ETHUSDT" in await say(env, "/liqmap sol")
    assert "Unknown window '2d'" in await say(env, "/liqmap btc 2d")
