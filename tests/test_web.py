"""The web page and JSON API (bot/adapters/web) over HTTP: every route, filter, error and header, against the app's
own Services (a scored market committed to a temporary store and published to the snapshot); one test runs the
real `run_bot` with the simulator; one drives Debian's chromium against `python -m bot demo` (marked browser)."""
from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest

from bot.sealing import Sealer
from aiohttp.test_utils import TestClient, TestServer
from conftest import wait_for

from bot.adapters.web import Budget, WebServer
from bot.adapters.web.views import iso
from bot.cli_run import web_address
from bot.config import Config
from bot.report import utc
from bot.score import ScoreInputs, api_item, score_all

ROOT = Path(__file__).resolve().parent.parent
TS = 1_796_000_000_000                      # the committed cycle's exchange time (ms)
DAY = 86_400_000
N = 80
FAKE_TOKEN = "123456789:FAKE-telegram-token-do-not-leak"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def market(n: int = N, seed: int = 3) -> list[ScoreInputs]:
    rnd = random.Random(seed)
    names = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "1000PEPEUSDT"] + [f"C{i:02d}XUSDT" for i in range(n - 4)]
    return [ScoreInputs(symbol=s, funding_rate=rnd.uniform(-0.001, 0.001), funding_interval_hours=8,
                        oi_change_1h=rnd.uniform(-0.04, 0.04), oi_change_4h=rnd.uniform(-0.08, 0.08),
                        oi_change_24h=None if i == 7 else rnd.uniform(-0.2, 0.2), basis=rnd.uniform(-0.004, 0.004),
                        price_change_1h=rnd.uniform(-0.03, 0.03), price_change_24h=rnd.uniform(-0.1, 0.1))
            for i, s in enumerate(names)]


def signal(sid: str, ts: int, symbol: str, score: int = 64, bias: str = "LONG", **receipt) -> dict:
    return {"id": sid, "ts": ts, "symbol": symbol, "rule": "cross:60", "kind": "threshold", "score": score,
            "bias": bias, "regime": "Long crowded · high funding + rising OI",
            "receipt": {"rule": "cross:60", "kind": "threshold", "threshold": 60, "prev_score": 50, "band": "stressed",
                        "bias": bias, "regime": "Long crowded · high funding + rising OI", "reason": "why",
                        "inputs": {"funding_rate": 0.001}, **receipt}}


SIGNALS = [signal("BTC10DAY", TS - 10 * DAY, "BTCUSDT"), signal("BTC60DAY", TS - 60 * DAY, "BTCUSDT"),
           signal("BTC120DY", TS - 120 * DAY, "BTCUSDT"),
           signal("BTC200DY", TS - 200 * DAY, "BTCUSDT"), signal("ETHNOW01", TS, "ETHUSDT", 41, "SHORT")]


@pytest.fixture
async def env(make_services):
    """Services with one committed, published cycle of N symbols and a few signals; a WebServer on a fake clock
    (generous request budget), served by aiohttp's test server."""
    svc = make_services()
    results = [r.as_dict() for r in score_all(market(), svc.cfg.score)]
    svc.store.commit_alert_cycle(dict(ts=TS, duration_s=1.0, requests=3, weight=3, failed={}), results, {}, SIGNALS,
                                 [], [], seal=Sealer(svc.signing).prepare(TS, results))    # sealed, as the engine does
    results = list((await svc.refresh_market({r["symbol"] for r in results})).results)   # ranked as published
    clock = FakeClock()
    web = WebServer(svc.queries, svc.cfg.score, 300.0, clock=clock, wall=lambda: TS / 1000 + 5, rate=1000, burst=1000)
    client = TestClient(TestServer(web.app))
    await client.start_server()

    class Env:
        pass
    e = Env()
    e.svc, e.web, e.client, e.clock, e.results = svc, web, client, clock, results
    # receipt hashes: the sealed cycle's own signal (ETHNOW01) has one; the older ones stand for unsealed cycles
    e.hash = {s["id"]: s["record_hash"] or s["id"] for s in svc.store.signals([x["id"] for x in SIGNALS])}
    yield e
    await client.close()


ROW_RE = re.compile(r'<tr data-symbol="([^"]+)" data-bias="([^"]+)"[^>]*>\s*<td class="n" data-v="(\d+)"')


def rows(html: str) -> list[tuple[int, str, str]]:
    """(rank, symbol, bias) of each row of the ranking."""
    return [(int(rank), sym, bias) for sym, bias, rank in ROW_RE.findall(html)]


# ---------------------------------------------------------------------------------------------- the page
async def test_the_page_shows_the_ranked_market_with_the_strip_and_how_to_read_it(env):
    r = await env.client.get("/")
    html = await r.text()
    assert r.status == 200 and r.content_type == "text/html"
    assert f"Updated {utc(TS)} · {N} symbols ranked" in html
    got = rows(html)
    assert [s for _, s, _ in got] == [x["symbol"] for x in env.results]
    assert [k for k, _, _ in got] == list(range(1, N + 1))
    headers = re.findall(r"<th[^>]*>([^<]+)</th>", html.split('id="ranking"')[1].split("</thead>")[0])
    assert headers == ["#", "Symbol", "Score", "Bias", "Regime", "OI 1h", "OI 4h", "OI 24h", "Funding", "Basis"]
    avg = round(sum(x["score"] for x in env.results) / N)
    count = {b: sum(1 for x in env.results if x["bias"] == b) for b in ("LONG", "SHORT", "NEUTRAL")}
    strip = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.split('class="strip"')[1].split("</ul>")[0]))
    assert (f"Avg stress {avg} Long bias {count['LONG']} Short bias {count['SHORT']} Neutral {count['NEUTRAL']}"
            in strip)
    top = env.results[0]
    assert f'<span class="pill band-{top["band"]}">{top["score"]}</span>' in html        # band colours
    assert "How to read it" in html and "squeeze" in html.lower() and "60–100" in html
    assert 'href="/symbol/BTCUSDT"' in html and 'id="q"' in html                      # links and the search box
    assert "—" in html                                              # a missing OI 24h shows as a dash
    head = await env.client.head("/")
    assert head.status == 200 and (await head.read()) == b""


@pytest.mark.parametrize("side,bias", [("short", "SHORT"), ("long", "LONG"), ("LONG", "LONG")])
async def test_a_filter_ranks_within_it_and_keeps_the_strip_market_wide(env, side, bias):
    all_html = await (await env.client.get("/")).text()
    r = await env.client.get(f"/?side={side}")
    html = await r.text()
    got = rows(html)
    want = [x["symbol"] for x in env.results if x["bias"] == bias]
    assert r.status == 200 and want and [s for _, s, _ in got] == want
    assert {b for _, _, b in got} == {bias}
    assert [k for k, _, _ in got] == list(range(1, len(want) + 1))
    strip = lambda h: h.split('class="strip"')[1].split("</ul>")[0]   # noqa: E731
    assert strip(html) == strip(all_html)
    assert 'aria-current="page"' in html.split(f'data-side="{side.lower()}"')[1].split(">")[0]


async def test_a_bad_filter_is_a_400_with_a_json_error(env):
    r = await env.client.get("/?side=sideways")
    assert r.status == 400 and (await r.json()) == {"error": "side must be long, short or all"}
    r = await env.client.get("/?side=sideways", headers={"Accept": "text/html"})
    assert r.status == 400 and "side must be long, short or all" in await r.text()


async def test_the_page_is_rendered_once_per_cycle_and_filter_and_answers_304_until_the_next(env, monkeypatch):
    calls = []
    render = env.web._render
    monkeypatch.setattr(env.web, "_render", lambda t, **kw: calls.append(t) or render(t, **kw))
    first = await env.client.get("/")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache" and etag
    for _ in range(4):
        assert (await env.client.get("/")).headers["ETag"] == etag
    again = await env.client.get("/", headers={"If-None-Match": etag})
    assert again.status == 304 and (await again.read()) == b""
    await env.client.get("/?side=long")
    assert calls == ["index.html", "index.html"]
    # a new cycle: a new page, a new tag
    env.svc.market.publish(TS + 300_000, env.results[::-1])
    fresh = await env.client.get("/", headers={"If-None-Match": etag})
    assert fresh.status == 200 and fresh.headers["ETag"] != etag
    assert calls == ["index.html", "index.html", "index.html"]


async def test_gzip_when_asked_with_its_own_tag(env):
    r = await env.client.get("/", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    body = await r.read()
    assert r.headers["Content-Encoding"] == "gzip" and r.headers["Vary"] == "Accept-Encoding"
    assert b"symbols ranked" in gzip.decompress(body)
    plain = await env.client.get("/", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and len(await plain.read()) > len(body)
    assert r.headers["ETag"] != plain.headers["ETag"]
    for tag in (r.headers["ETag"], plain.headers["ETag"], f'W/{plain.headers["ETag"]}'):
        assert (await env.client.get("/", headers={"If-None-Match": tag})).status == 304


async def test_before_the_first_cycle_the_page_says_so(make_services):
    svc = make_services()
    web = WebServer(svc.queries, svc.cfg.score, 300.0)
    async with TestClient(TestServer(web.app)) as client:
        html = await (await client.get("/")).text()
        assert "No cycle yet" in html and "Waiting for the first cycle" in html
        health = await client.get("/healthz")
        assert health.status == 503 and (await health.json())["status"] == "starting"
        r = await client.get("/api/public/pressure")
        assert (await r.json()) == {"generatedAt": None, "count": 0, "weights": {
            "oi1hPct": 12, "oi4hPct": 16, "oi24hPct": 28, "fundingRatePct": 28, "basisPct": 16}, "items": []}


# ---------------------------------------------------------------------------------------------- a symbol
async def test_a_symbol_page_shows_contributions_price_context_chart_and_its_signals(env):
    r = await env.client.get("/symbol/BTCUSDT")
    html = await r.text()
    btc = next(x for x in env.results if x["symbol"] == "BTCUSDT")
    assert r.status == 200
    for label in ("Open interest change 1h", "Open interest change 4h", "Open interest change 24h",
                  "Funding rate per interval", "Perp-index basis"):
        assert label in html
    for name, points in btc["contributions"].items():
        assert f"{points:+.2f}" in html
    assert btc["regime"].replace("·", "·") in html and btc["reason"] in html
    if btc["warning"]:
        assert "⚠" in html
    assert btc["quadrant"] and btc["quadrant"] in html
    assert '<img src="/symbol/BTCUSDT/chart.png"' in html
    for sid in ("BTC10DAY", "BTC60DAY", "BTC120DY"):            # its signals, by their receipt hash
        assert env.hash[sid] in html
    assert "ETHNOW01" not in html


async def test_symbol_names_as_typed_lead_to_the_page_and_unknown_ones_suggest(env):
    r = await env.client.get("/symbol/btc", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/symbol/BTCUSDT"
    r = await env.client.get("/symbol", params={"q": "eth/usdt"}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/symbol/ETHUSDT"
    r = await env.client.get("/symbol", params={"q": "pepe"}, allow_redirects=False)
    assert r.headers["Location"] == "/symbol/1000PEPEUSDT"
    r = await env.client.get("/symbol/BTCUSD")
    assert r.status == 404 and (await r.json()) == {"error": "unknown symbol BTCUSD; did you mean BTCUSDT?",
                                                    "suggestion": "BTCUSDT"}
    r = await env.client.get("/symbol/BTCUSD", headers={"Accept": "text/html"})
    assert r.status == 404 and 'Did you mean <a href="/symbol/BTCUSDT">BTCUSDT</a>' in await r.text()
    assert (await env.client.get("/symbol", params={"q": " "})).status == 400


async def test_the_chart_is_a_png_rendered_once_per_cycle(env, monkeypatch):
    calls = []
    chart = env.svc.queries.chart

    async def counting(sym):
        calls.append(sym)
        return await chart(sym)
    monkeypatch.setattr(env.svc.queries, "chart", counting)
    r = await env.client.get("/symbol/BTCUSDT/chart.png")
    body = await r.read()
    assert r.status == 200 and r.content_type == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    r2 = await env.client.get("/symbol/btcusdt/chart.png", headers={"If-None-Match": r.headers["ETag"]})
    assert r2.status == 304 and calls == ["BTCUSDT"]
    assert (await env.client.get("/symbol/NOPEUSDT/chart.png")).status == 404


# ---------------------------------------------------------------------------------------------- other pages
async def test_signals_page_lists_the_stored_signals_newest_first(env):
    html = await (await env.client.get("/signals")).text()
    order = [html.index(env.hash[s]) for s in ("ETHNOW01", "BTC10DAY", "BTC60DAY", "BTC120DY", "BTC200DY")]
    assert order == sorted(order)
    assert 'href="/symbol/ETHUSDT"' in html and "crossed 60 (from 50)" in html


@pytest.mark.parametrize("path,words", [("/performance", "Win rate = TP1 / (TP1 + SL)"), ("/verify", "Public key (Ed25519, hex)"),
                                        ("/liqmap/btc", "LiqMap BTC"), ("/liqmap/ETH", "LiqMap ETH"),
                                        ("/methodology", "weight x clip(input / full scale, -1, +1)")])
async def test_future_features_say_so_plainly_and_methodology_explains(env, path, words):
    r = await env.client.get(path)
    html = await r.text()
    assert r.status == 200 and words in html
    if path.startswith("/liqmap"):
        assert "Not available yet" in html
    if path == "/verify":          # the key seals are checked against, and the last sealed cycle
        assert env.svc.signing.public_key in html and "Last sealed cycle" in html


async def test_liqmap_is_for_btc_and_eth_only(env):
    r = await env.client.get("/liqmap/xrp")
    assert r.status == 404 and "btc and eth" in (await r.json())["error"]


# ---------------------------------------------------------------------------------------------- JSON API
async def test_api_pressure_uses_the_reference_field_names(env):
    r = await env.client.get("/api/public/pressure")
    data = await r.json()
    assert r.status == 200 and r.headers["Cache-Control"] == "no-cache" and r.headers["ETag"]
    assert data["generatedAt"] == iso(TS) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["generatedAt"])
    assert data["count"] == N == len(data["items"])
    assert data["weights"] == {"oi1hPct": 12, "oi4hPct": 16, "oi24hPct": 28, "fundingRatePct": 28, "basisPct": 16}
    first = data["items"][0]
    for key in ("symbol", "score", "direction", "regime", "regimeLabel", "components", "contributions", "weights",
                "explainer"):
        assert key in first
    assert [i["symbol"] for i in data["items"]] == [x["symbol"] for x in env.results]
    assert first == json.loads(json.dumps(dict(api_item(env.results[0], env.svc.cfg.score), rank=1)))
    again = await env.client.get("/api/public/pressure", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status == 304


async def test_api_pressure_for_one_symbol_is_case_insensitive_and_suggests(env):
    r = await env.client.get("/api/public/pressure/btcusdt")
    data = await r.json()
    assert r.status == 200 and data["item"]["symbol"] == "BTCUSDT" and data["generatedAt"] == iso(TS)
    assert (await (await env.client.get("/api/public/pressure/sol")).json())["item"]["symbol"] == "SOLUSDT"
    r = await env.client.get("/api/public/pressure/ETHUSD")
    assert r.status == 404 and (await r.json())["suggestion"] == "ETHUSDT"
    assert "did you mean ETHUSDT?" in (await r.json())["error"]
    r = await env.client.get("/api/public/pressure/" + "X" * 300)
    assert r.status == 404 and len((await r.json())["error"]) < 80


async def test_api_recent_lists_signals_with_their_receipt_hash_or_id(env):
    data = await (await env.client.get("/api/public/recent")).json()
    assert [i["id"] for i in data["items"]] == ["ETHNOW01", "BTC10DAY", "BTC60DAY", "BTC120DY", "BTC200DY"]
    by = {i["id"]: i for i in data["items"]}
    assert len(env.hash["ETHNOW01"]) == 64 and by["ETHNOW01"]["ref"] == by["ETHNOW01"]["receiptHash"] == env.hash["ETHNOW01"]
    assert by["BTC10DAY"]["ref"] == "BTC10DAY" and by["BTC10DAY"]["receiptHash"] is None
    assert by["ETHNOW01"]["time"] == iso(TS) and by["ETHNOW01"]["direction"] == "SHORT"
    assert data["count"] == 5
    assert [i["id"] for i in (await (await env.client.get("/api/public/recent?limit=2")).json())["items"]] == [
        "ETHNOW01", "BTC10DAY"]
    for bad in ("0", "1000", "x"):
        r = await env.client.get(f"/api/public/recent?limit={bad}")
        assert r.status == 400 and "limit" in (await r.json())["error"]


@pytest.mark.parametrize("window,ids", [("30", ["BTC10DAY"]), ("90", ["BTC10DAY", "BTC60DAY"]),
                                        ("180", ["BTC10DAY", "BTC60DAY", "BTC120DY"]), (None, ["BTC10DAY"])])
async def test_api_symbol_lists_its_signals_in_the_window(env, window, ids):
    r = await env.client.get("/api/public/symbols/btc", params={"window": window} if window else {})
    data = await r.json()
    assert r.status == 200 and data["symbol"] == "BTCUSDT" and data["windowDays"] == int(window or 30)
    assert [s["id"] for s in data["signals"]] == ids and data["count"] == len(ids)
    assert data["pressure"]["symbol"] == "BTCUSDT"
    perf = data["performance"]          # none of these signals has closed: no figure that would mislead
    assert perf["closed"] == 0 and perf["follow"]["signals"] == 0 and perf["follow"]["win_rate"] is None


async def test_api_symbol_rejects_bad_windows_and_unknown_symbols(env):
    for bad in ("7", "abc", "30.0", ""):
        r = await env.client.get("/api/public/symbols/BTCUSDT", params={"window": bad})
        assert r.status == 400 and (await r.json()) == {"error": "window must be 30, 90 or 180 (days)"}
    r = await env.client.get("/api/public/symbols/BTCUSDX?window=30")
    assert r.status == 404 and (await r.json())["suggestion"] == "BTCUSDT"


async def test_healthz_is_the_last_cycles_age(env):
    r = await env.client.get("/healthz")
    data = await r.json()
    assert r.status == 200 and data["status"] == "ok" and data["ts"] == TS and data["symbols"] == N
    assert data["ageSeconds"] == 5.0 and r.headers["Cache-Control"] == "no-store"   # published before: exchange time
    env.clock.t += 3 * 300 - 6
    assert (await env.client.get("/healthz")).status == 200
    env.clock.t += 2
    r = await env.client.get("/healthz")
    assert r.status == 503 and (await r.json())["status"] == "stale"
    env.svc.market.publish(TS + 300_000, env.results)        # a new cycle: young again
    r = await env.client.get("/healthz")
    assert r.status == 200 and (await r.json())["ageSeconds"] == 0.0


# ---------------------------------------------------------------------------------------------- safety
async def test_read_only_unknown_paths_and_failures_answer_json_without_internals(env, monkeypatch):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = await env.client.request(method, "/api/public/pressure", data=b"x")
        assert r.status == 405 and r.headers["Allow"] == "GET,HEAD"
        assert (await r.json())["error"].startswith("method not allowed")
    r = await env.client.get("/admin")
    assert r.status == 404 and (await r.json()) == {"error": "not found"}

    async def boom(*a, **k):
        raise RuntimeError(f"database at {env.svc.store.path} is on fire")
    monkeypatch.setattr(env.svc.queries, "public_signals", boom)
    for path in ("/api/public/recent", "/signals"):
        r = await env.client.get(path)
        assert r.status == 500 and (await r.json()) == {"error": "internal error"}
    r = await env.client.get("/signals", headers={"Accept": "text/html"})
    html = await r.text()
    assert r.status == 500 and "internal error" in html and "fire" not in html and "Traceback" not in html


async def test_every_value_is_escaped(env):
    evil = dict(env.results[0], reason='<script>alert("x")</script>', regime="<b>bold</b>")
    env.svc.market.publish(TS + 1, [evil, *env.results[1:]])
    html = await (await env.client.get("/")).text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    r = await env.client.get("/symbol", params={"q": "<img src=x>"}, headers={"Accept": "text/html"})
    assert r.status == 404 and "<img src=x>" not in await r.text()


async def test_security_headers_on_every_answer(env):
    for path in ("/", "/api/public/pressure", "/nope", "/static/style.css"):
        h = (await env.client.get(path)).headers
        assert h["X-Content-Type-Options"] == "nosniff" and "default-src 'none'" in h["Content-Security-Policy"]
        assert h["Server"] == "pressure-bot" and h["X-Frame-Options"] == "DENY"


async def test_no_secret_or_path_in_any_answer(env, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "fake.discord.token")
    paths = ["/", "/?side=long", "/?side=short", "/symbol/BTCUSDT", "/symbol/BTCUSDT/chart.png", "/signals",
             "/performance", "/verify", "/liqmap/btc", "/liqmap/eth", "/methodology", "/api/public/pressure",
             "/api/public/pressure/BTCUSDT", "/api/public/recent", "/api/public/symbols/BTCUSDT?window=180",
             "/healthz", "/static/style.css", "/static/page.js", "/favicon.ico", "/nope", "/symbol/NOPE",
             "/?side=x", "/api/public/symbols/BTCUSDT?window=1"]
    secrets = [FAKE_TOKEN.encode(), b"FAKE-telegram", b"fake.discord.token", str(env.svc.store.path).encode(),
               str(Path(env.svc.store.path).parent).encode(), str(ROOT).encode(), b"Traceback", b"/home/", b"/tmp/"]
    for path in paths:
        for accept in ("*/*", "text/html"):
            r = await env.client.get(path, headers={"Accept": accept})
            blob = await r.read() + str(dict(r.headers)).encode()
            assert r.status < 500, path
            for s in secrets:
                assert s not in blob, (path, s)


async def test_a_client_over_its_budget_gets_429_with_retry_after(make_services):
    svc = make_services()
    clock = FakeClock()
    web = WebServer(svc.queries, svc.cfg.score, 300.0, rate=1.0, burst=3, clock=clock)
    async with TestClient(TestServer(web.app)) as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status in (200, 503)
        r = await client.get("/api/public/pressure")
        assert r.status == 429 and r.headers["Retry-After"] == "1"
        assert (await r.json()) == {"error": "too many requests", "retryAfter": 1}
        clock.t += 1.0
        assert (await client.get("/api/public/pressure")).status == 200


def test_the_budget_is_per_address_refills_and_forgets_idle_clients():
    clock = FakeClock()
    b = Budget(rate=2.0, burst=2, clock=clock, max_clients=3)
    assert b.take("a") == 0 and b.take("a") == 0 and b.take("a") == pytest.approx(0.5)
    assert b.take("b") == 0                     # another address has its own bucket
    clock.t += 0.5
    assert b.take("a") == 0
    b.take("c")
    clock.t += 10
    b.take("d")                                 # over max_clients: the idle (full) buckets go
    assert set(b._buckets) == {"d"}


# ---------------------------------------------------------------------------------------------- wiring
def test_web_addresses_for_the_cli():
    assert web_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert web_address("8080") == ("127.0.0.1", 8080)
    assert web_address("0.0.0.0:0") == ("0.0.0.0", 0)
    assert web_address("[::1]:9000") == ("::1", 9000)
    for bad in ("localhost", "1.2.3.4:http", "x:70000"):
        with pytest.raises(Exception):
            web_address(bad)


def test_templates_and_static_files_are_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "bot.adapters.web"]
    folder = ROOT / "bot" / "adapters" / "web"
    files = {p.relative_to(folder) for d in ("templates", "static") for p in (folder / d).iterdir()}
    covered = {p.relative_to(folder) for pat in patterns for p in folder.glob(pat)}
    assert files and files == covered
    assert "jinja2" in " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


async def test_enable_web_serves_on_loopback_with_run_bot_and_the_simulator(make_services, tmp_path, sim_start_ms):
    """The real thing in one process: run_bot over the simulated market, the page registered like an adapter,
    bound to 127.0.0.1 on a free port, live before the first cycle, the market on it after."""
    from bot.app import enable_web, run_bot
    from bot.demo_market.binance_server import BinanceSimServer
    from bot.demo_market.market import MarketSimulator
    sim = MarketSimulator(n_symbols=40, seed=7, speed=600, start_ms=sim_start_ms, held=True)
    server = BinanceSimServer(sim, weight_limit=1_000_000, futures_data_limit=100_000)
    url = await server.start()
    cfg = Config.model_validate({"engine": {"interval_minutes": 0.02},
                                 "exchange": {"weight_limit": 1_000_000, "data_limit_per_5m": 100_000},
                                 "universe": {"min_quote_volume": 0}})
    svc = make_services(cfg, exchange_url=url)
    announced: list[str] = []
    enable_web(svc, "127.0.0.1", 0, announce=announced.append)
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(svc, stop, show_table=False, on_ready=sim.release))
    try:
        for _ in range(200):
            if announced:
                break
            await asyncio.sleep(0.05)
        assert announced and announced[0].startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession(announced[0]) as http:
            data = None
            for _ in range(300):
                async with http.get("/api/public/pressure") as r:
                    data = await r.json()
                if data["count"]:
                    break
                await asyncio.sleep(0.1)
            assert data["count"] > 30
            async with http.get("/healthz") as r:
                assert r.status == 200
            async with http.get("/") as r:
                assert f"{data['count']} symbols ranked" in await r.text()
            async with http.get(f"/symbol/{data['items'][0]['symbol']}/chart.png") as r:
                assert r.status == 200 and (await r.read())[:4] == b"\x89PNG"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await server.stop()
    with pytest.raises(aiohttp.ClientError):                   # stopped with the bot
        async with aiohttp.ClientSession() as http:
            await http.get(announced[0] + "/healthz")


async def test_a_port_in_use_is_logged_and_the_bot_runs_on(make_services, caplog):
    svc = make_services()
    first = WebServer(svc.queries, svc.cfg.score, 300.0)
    await first.start()
    try:
        port = int(first.url.rsplit(":", 1)[1])
        second = WebServer(svc.queries, svc.cfg.score, 300.0, port=port)
        await second.start()
        assert second.url is None and "cannot listen on 127.0.0.1" in caplog.text
        await second.stop()
    finally:
        await first.stop()


# ---------------------------------------------------------------------------------------------- a real browser
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_or_skip():
    try:
        import selenium  # noqa: F401
    except ImportError:
        why = "selenium is not installed (pip install -e '.[test]')"
    else:
        why = None if Path(CHROMEDRIVER).exists() and shutil.which("chromium") else \
            "Debian's chromium and chromium-driver are not installed (.ci/run installs them with apt-get)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(why)


@pytest.fixture
def demo_page(tmp_path, sim_start_ms):
    """`python -m bot demo --web 127.0.0.1:0` as a real process; yields the URL it prints."""
    start = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(sim_start_ms / 1000))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "demo", "--web", "127.0.0.1:0", "--symbols", "120",
                             "--seconds", "150", "--start", start, "--db", str(tmp_path / "demo.db"),
                             "--alert-log", str(tmp_path / "alerts.jsonl")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp_path / "demo.log", "w"))
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline().decode(errors="replace")
            if not line and proc.poll() is not None:
                break
            m = re.search(r"\bopen (http://127\.0\.0\.1:\d+)", line)
            url = m and m.group(1)
        assert url, "the demo printed no URL: " + (tmp_path / "demo.log").read_text()[-2000:]
        threading_drain(proc)

        def page_up():
            try:
                with urllib_get(url + "/") as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(page_up, 10, "the demo's page")
        assert time.monotonic() - started < 10, "the page must be live within 10 s of `python -m bot demo`"
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def threading_drain(proc: subprocess.Popen) -> None:
    """Keep reading the demo's stdout so its prints never block on a full pipe."""
    import threading
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()


@pytest.mark.process
@pytest.mark.browser
def test_the_page_in_a_real_browser(demo_page, tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    def market_rows():
        with urllib_get(demo_page + "/api/public/pressure") as r:
            return json.load(r)["count"] > 50
    wait_for(market_rows, 60, "the demo's first cycle on /api/public/pressure")

    opts = webdriver.ChromeOptions()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
              f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--window-size=1280,1400"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(30)
        driver.get(demo_page + "/")
        table_rows = driver.find_elements(By.CSS_SELECTOR, "#ranking tbody tr[data-symbol]")
        assert len(table_rows) > 50
        assert "symbols ranked" in driver.find_element(By.CSS_SELECTOR, ".updated").text
        artifacts = ROOT / "tests" / "artifacts"
        artifacts.mkdir(exist_ok=True)
        driver.save_screenshot(str(artifacts / "index.png"))

        def fresh(what, fn, timeout=15):
            """fn() until it returns something truthy; a reload for a new cycle in between just means again."""
            def attempt():
                try:
                    return fn()
                except StaleElementReferenceException:
                    return None
            return wait_for(attempt, timeout, what)

        def shown(attr):
            return [tr.get_attribute(attr) for tr in
                    driver.find_elements(By.CSS_SELECTOR, "#ranking tbody tr[data-symbol]")]

        fresh("the Short-bias filter link", lambda: driver.find_element(By.LINK_TEXT, "Short bias").click() or True)
        wait_for(lambda: "side=short" in driver.current_url, 10, "the Short-bias filter")
        biases = fresh("the Short-bias rows", lambda: shown("data-bias"))
        assert set(biases) == {"SHORT"}

        def open_first_symbol():
            link = driver.find_element(By.CSS_SELECTOR, "#ranking tbody tr[data-symbol] td a")
            name = link.text
            link.click()
            return name
        symbol = fresh("a symbol link to click", open_first_symbol)
        wait_for(lambda: driver.current_url.endswith(f"/symbol/{symbol}"), 10, f"{symbol}'s page")
        width = fresh("the chart image", lambda: driver.execute_script(
            "const i = document.querySelector('.chart img'); return i && i.complete && i.naturalWidth;"), 30)
        assert width > 0
        assert symbol in fresh("the symbol's heading", lambda: driver.find_element(By.TAG_NAME, "h1").text)

        driver.get(demo_page + "/")                  # sorting by a column header (the page's small script)
        fresh("the Symbol header", lambda: driver.find_element(By.XPATH, "//th[text()='Symbol']").click() or True)
        names = fresh("the sorted rows", lambda: shown("data-symbol"))
        assert len(names) > 50 and names == sorted(names)

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def urllib_get(url: str):
    import urllib.request
    return urllib.request.urlopen(url, timeout=10)


async def test_closed_signals_fill_the_performance_page_and_the_recent_api(env):
    """A signal closed (and sealed) as the engine does: /performance shows the figures, /api/public/recent its
    closing record, /signals its outcome."""
    closing = {"signal": "ETHNOW01", "outcome": {
        "signal": "ETHNOW01", "symbol": "ETHUSDT", "bias": "SHORT", "opened": TS, "entry": 100.0, "status": "TP1",
        "closed": TS + 3_600_000, "exit": 97.0, "reason": None, "atr_1h": 2.0, "missing_candles": 0, "move": None,
        "follow": {"direction": "SHORT", "tp1": 97.0, "sl": 102.0, "status": "TP1", "exit": 97.0,
                   "exit_ts": TS + 3_600_000, "reason": None, "funding_bps": 0.0, "net_bps": 286.0},
        "fade": {"direction": "LONG", "tp1": 103.0, "sl": 98.0, "status": "SL", "exit": 98.0,
                 "exit_ts": TS + 1_800_000, "reason": None, "funding_bps": 0.0, "net_bps": -214.0}}}
    ts = TS + 3_600_000
    env.svc.store.commit_alert_cycle(dict(ts=ts, duration_s=1.0, requests=0, weight=0, failed={}), env.results, {},
                                     [], [], [], seal=Sealer(env.svc.signing).prepare(ts, env.results, [closing]),
                                     closings=[closing])
    await env.svc.refresh_market({r["symbol"] for r in env.results})
    html = await (await env.client.get("/performance")).text()
    assert "1 closed, 1 open signals" in html                   # opened in the window: ETHNOW01, BTC10DAY
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Follow the bias 1 100% — +286.0 +286 +286 +286 0" in text          # no loss: no profit factor
    assert "Fade the bias 1 0% 0.00 -214.0" in text
    data = await (await env.client.get("/api/public/recent")).json()
    eth = next(s for s in data["items"] if s["id"] == "ETHNOW01")
    assert eth["outcome"]["status"] == "TP1" and eth["status"] == "TP1" and eth["followBps"] == 286.0
    assert "TP1" in await (await env.client.get("/signals")).text()
    assert (await env.client.get("/performance", params={"window": "7"})).status == 400
