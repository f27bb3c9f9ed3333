"""Tests for the Binance-shaped simulator server (bot/demo_market/binance_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from bot.demo_market.binance_server import BinanceSimServer, Faults
from bot.demo_market.market import MarketSimulator

START = 1_794_999_960_000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:   # on a minute boundary
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def env():
    clock = FakeClock()
    sim = MarketSimulator(n_symbols=40, seed=7, speed=60, start_ms=START)
    faults = Faults()
    server = BinanceSimServer(sim, faults, clock=clock)
    base = await server.start()
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        yield server, client, faults, clock
    await server.stop()


def weight(resp: httpx.Response) -> int:
    value = resp.headers[WEIGHT_HEADER]
    assert isinstance(value, str) and value.isdigit()
    return int(value)


# ---------------------------------------------------------------------------------------------
# shapes


async def test_endpoints_shapes(env):
    server, client, _, _ = env
    assert server.base_url.startswith("http://127.0.0.1:")
    r = await client.get("/fapi/v1/ping")
    assert r.status_code == 200 and r.json() == {}
    r = await client.get("/fapi/v1/time")
    assert isinstance(r.json()["serverTime"], int)

    r = await client.get("/fapi/v1/exchangeInfo")
    assert r.headers["content-type"].startswith("application/json")
    syms = {s["symbol"] for s in r.json()["symbols"]}
    assert {"BTCUSDT", "BTCUSDT_261225", "OLDUSDT", "BTCUSDC"} <= syms

    r = await client.get("/fapi/v1/premiumIndex")
    assert isinstance(r.json(), list) and len(r.json()) == 43
    r = await client.get("/fapi/v1/premiumIndex", params={"symbol": "ETHUSDT"})
    body = r.json()
    assert isinstance(body, dict) and body["symbol"] == "ETHUSDT"
    assert isinstance(body["markPrice"], str) and isinstance(body["time"], int)

    r = await client.get("/fapi/v1/ticker/24hr")
    assert isinstance(r.json(), list) and len(r.json()) == 43
    r = await client.get("/fapi/v1/ticker/24hr", params={"symbol": "SOLUSDT"})
    assert r.json()["symbol"] == "SOLUSDT" and isinstance(r.json()["count"], int)

    r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
    assert set(r.json()) == {"symbol", "openInterest", "time"} and isinstance(r.json()["openInterest"], str)

    r = await client.get("/fapi/v1/fundingInfo")
    assert all(row["fundingIntervalHours"] != 8 for row in r.json())

    r = await client.get("/futures/data/openInterestHist", params={"symbol": "BTCUSDT", "period": "5m", "limit": 288})
    rows = r.json()
    assert len(rows) == 288 and all(isinstance(x["timestamp"], int) for x in rows)
    assert [x["timestamp"] for x in rows] == sorted(x["timestamp"] for x in rows)
    r = await client.get("/futures/data/openInterestHist", params={"symbol": "BTCUSDT", "period": "1h"})
    assert len(r.json()) == 30


async def test_error_codes(env):
    _, client, _, _ = env
    r = await client.get("/fapi/v1/openInterest")
    assert r.status_code == 400 and r.json() == {
        "code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."}
    for path in ("/fapi/v1/openInterest", "/fapi/v1/premiumIndex", "/fapi/v1/ticker/24hr"):
        r = await client.get(path, params={"symbol": "NOPEUSDT"})
        assert r.status_code == 400 and r.json() == {"code": -1121, "msg": "Invalid symbol."}
    hist = "/futures/data/openInterestHist"
    r = await client.get(hist, params={"symbol": "NOPEUSDT", "period": "5m"})
    assert r.json()["code"] == -1121
    r = await client.get(hist, params={"period": "5m"})
    assert r.status_code == 400 and r.json()["code"] == -1102
    r = await client.get(hist, params={"symbol": "BTCUSDT", "period": "7m"})
    assert r.status_code == 400 and r.json() == {"code": -1120, "msg": "Invalid interval."}
    for bad in ("0", "501", "abc"):
        r = await client.get(hist, params={"symbol": "BTCUSDT", "period": "5m", "limit": bad})
        assert r.status_code == 400
        assert r.json() == {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
    r = await client.get("/fapi/v1/nothing")
    assert r.status_code == 404 and WEIGHT_HEADER in r.headers


# ---------------------------------------------------------------------------------------------
# weights and limits


async def test_weight_header_accumulates(env):
    server, client, _, clock = env
    steps = [
        ("/fapi/v1/premiumIndex", {}, 10),
        ("/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}, 1),
        ("/fapi/v1/ticker/24hr", {}, 40),
        ("/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}, 1),
        ("/fapi/v1/openInterest", {"symbol": "BTCUSDT"}, 1),
        ("/fapi/v1/exchangeInfo", {}, 1),
        ("/fapi/v1/fundingInfo", {}, 0),
        ("/futures/data/openInterestHist", {"symbol": "BTCUSDT", "period": "5m"}, 0),
        ("/fapi/v1/openInterest", {"symbol": "NOPEUSDT"}, 1),     # errors carry the header and weight too
    ]
    total = 0
    for path, params, w in steps:
        r = await client.get(path, params=params)
        total += w
        assert weight(r) == total, path
    assert server.used_weight == total
    clock.t += 60                                           # new wall-clock minute
    r = await client.get("/fapi/v1/premiumIndex")
    assert weight(r) == 10
    assert len(server.requests) == len(steps) + 1
    assert server.requests[1] == ("/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"})
    assert server.count("/fapi/v1/premiumIndex") == 3
    server.reset_counts()
    assert server.requests == [] and server.used_weight == 0


async def test_weight_limit_429(env):
    server, client, _, clock = env
    for i in range(60):                                     # 60 x 40 = 2400: still allowed
        r = await client.get("/fapi/v1/ticker/24hr")
        assert r.status_code == 200, i
    assert weight(r) == 2400
    r = await client.get("/fapi/v1/ticker/24hr")
    assert r.status_code == 429 and weight(r) == 2440
    assert r.json()["code"] == -1003 and "2400" in r.json()["msg"]
    assert int(r.headers["Retry-After"]) >= 1
    clock.t += 61
    r = await client.get("/fapi/v1/ticker/24hr", params={"symbol": "BTCUSDT"})
    assert r.status_code == 200 and weight(r) == 1


async def test_futures_data_request_limit():
    clock = FakeClock()
    sim = MarketSimulator(n_symbols=20, seed=7, start_ms=START)
    server = BinanceSimServer(sim, clock=clock, futures_data_limit=5)
    assert BinanceSimServer(sim).futures_data_limit == 1000
    base = await server.start()
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            params = {"symbol": "BTCUSDT", "period": "5m", "limit": 2}
            for _ in range(5):
                assert (await client.get("/futures/data/openInterestHist", params=params)).status_code == 200
            r = await client.get("/futures/data/openInterestHist", params=params)
            assert r.status_code == 429 and r.json()["code"] == -1003 and "Retry-After" in r.headers
            assert weight(r) == 0
            assert (await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})).status_code == 200
            clock.t += 301
            assert (await client.get("/futures/data/openInterestHist", params=params)).status_code == 200
    finally:
        await server.stop()


# ---------------------------------------------------------------------------------------------
# faults


async def test_fault_429_and_418(env):
    _, client, faults, _ = env
    faults.add("429", "/fapi/v1/openInterest", times=2, retry_after=3)
    for _ in range(2):
        r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert r.json() == {"code": -1003, "msg": "Too many requests; current limit is 2400 requests per minute. "
                            "Please use the websocket for live updates to avoid polling the API."}
        assert WEIGHT_HEADER in r.headers
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
    assert r.status_code == 200 and faults.pending() == 0

    faults.add("429", retry_after=None)
    r = await client.get("/fapi/v1/ping")
    assert r.status_code == 429 and "Retry-After" not in r.headers

    faults.add("418", "/fapi/v1/premiumIndex", retry_after=120)
    r = await client.get("/fapi/v1/premiumIndex")
    assert r.status_code == 418 and r.headers["Retry-After"] == "120"
    assert r.json()["code"] == -1003 and "banned until" in r.json()["msg"]


async def test_fault_matching_by_path_and_symbol(env):
    _, client, faults, _ = env
    faults.add("429", "/fapi/v1/openInterest", symbol="ETHUSDT")
    r = await client.get("/fapi/v1/premiumIndex", params={"symbol": "ETHUSDT"})
    assert r.status_code == 200
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
    assert r.status_code == 200
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "ETHUSDT"})
    assert r.status_code == 429
    assert faults.pending() == 0


async def test_fault_5xx(env):
    _, client, faults, _ = env
    faults.add("5xx", "/fapi/v1/ticker")
    r = await client.get("/fapi/v1/ticker/24hr")
    assert r.status_code == 502 and "text/html" in r.headers["content-type"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    faults.add("5xx", status=503)
    r = await client.get("/fapi/v1/exchangeInfo")
    assert r.status_code == 503 and r.content == b""
    assert (await client.get("/fapi/v1/ticker/24hr")).status_code == 200


async def test_fault_malformed(env):
    _, client, faults, _ = env
    faults.add("malformed", "/fapi/v1/premiumIndex")
    r = await client.get("/fapi/v1/premiumIndex")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        r.json()
    assert isinstance((await client.get("/fapi/v1/premiumIndex")).json(), list)


async def test_fault_missing_symbol(env):
    _, client, faults, _ = env
    faults.add("missing_symbol", symbol="SOLUSDT", times=2)
    listed = {row["symbol"] for row in (await client.get("/fapi/v1/premiumIndex")).json()}
    assert "SOLUSDT" not in listed and "BTCUSDT" in listed
    for _ in range(2):
        r = await client.get("/fapi/v1/openInterest", params={"symbol": "SOLUSDT"})
        assert r.status_code == 400 and r.json() == {"code": -1121, "msg": "Invalid symbol."}
        assert (await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})).status_code == 200
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "SOLUSDT"})
    assert r.status_code == 200
    listed = {row["symbol"] for row in (await client.get("/fapi/v1/premiumIndex")).json()}
    assert "SOLUSDT" in listed


async def test_fault_timeout_and_latency(env):
    server, client, faults, _ = env
    faults.add("timeout", "/fapi/v1/openInterest")
    t0 = time.perf_counter()
    with pytest.raises(httpx.TimeoutException):
        await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"}, timeout=0.1)
    assert time.perf_counter() - t0 < 2
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
    assert r.status_code == 200

    faults.latency_ms = 50
    t0 = time.perf_counter()
    assert (await client.get("/fapi/v1/ping")).status_code == 200
    assert time.perf_counter() - t0 >= 0.045
    faults.latency_ms = 0

    # a still-sleeping timeout handler must not hold up stop()
    faults.add("timeout")
    task = asyncio.create_task(client.get("/fapi/v1/ping", timeout=10))
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    await server.stop()
    assert time.perf_counter() - t0 < 3
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_fault_value_replaces_one_symbols_field(env):
    _, client, faults, _ = env
    faults.add("value", "/fapi/v1/premiumIndex", symbol="ETHUSDT", field="markPrice", value="NaN", times=2)
    faults.add("value", "/fapi/v1/openInterest", symbol="BTCUSDT", field="openInterest", value=float("inf"))
    rows = {r["symbol"]: r for r in (await client.get("/fapi/v1/premiumIndex")).json()}
    assert rows["ETHUSDT"]["markPrice"] == "NaN" and rows["BTCUSDT"]["markPrice"] != "NaN"
    one = (await client.get("/fapi/v1/premiumIndex", params={"symbol": "ETHUSDT"})).json()
    assert one["markPrice"] == "NaN"
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
    assert b'"openInterest":Infinity' in r.content               # a bare token, as a careless server sends it
    assert faults.pending() == 0
    rows = {r["symbol"]: r for r in (await client.get("/fapi/v1/premiumIndex")).json()}
    assert rows["ETHUSDT"]["markPrice"] != "NaN"


async def test_fault_retry_after_is_sent_verbatim(env):
    _, client, faults, _ = env
    faults.add("429", retry_after="inf")
    faults.add("418", retry_after="1e9")
    r = await client.get("/fapi/v1/ping")
    assert r.status_code == 429 and r.headers["Retry-After"] == "inf"
    r = await client.get("/fapi/v1/ping")
    assert r.status_code == 418 and r.headers["Retry-After"] == "1e9" and "banned until" in r.json()["msg"]


async def test_fault_trickle_sends_the_body_a_byte_at_a_time(env):
    _, client, faults, _ = env
    faults.trickle_interval_s = 0.003
    faults.add("trickle", "/fapi/v1/openInterest")
    t0 = time.perf_counter()
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})
    took = time.perf_counter() - t0
    assert r.status_code == 200 and r.json()["symbol"] == "BTCUSDT"
    assert took >= 0.003 * (len(r.content) - 1)
    # a client that gives up early does not disturb the server
    faults.trickle_interval_s = 0.3
    faults.add("trickle", "/fapi/v1/openInterest")
    with pytest.raises(httpx.TimeoutException):
        await client.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"}, timeout=0.1)
    assert (await client.get("/fapi/v1/ping")).status_code == 200


async def test_unlisted_symbols_and_short_history(env):
    server, client, faults, _ = env
    faults.unlisted.add("SOLUSDT")
    for path in ("/fapi/v1/exchangeInfo", "/fapi/v1/premiumIndex", "/fapi/v1/ticker/24hr"):
        body = (await client.get(path)).json()
        rows = body["symbols"] if isinstance(body, dict) else body
        assert "SOLUSDT" not in {r["symbol"] for r in rows} and "BTCUSDT" in {r["symbol"] for r in rows}, path
    r = await client.get("/fapi/v1/openInterest", params={"symbol": "SOLUSDT"})
    assert r.status_code == 400 and r.json()["code"] == -1121
    faults.unlisted.discard("SOLUSDT")                               # listed now
    assert (await client.get("/fapi/v1/openInterest", params={"symbol": "SOLUSDT"})).status_code == 200
    now = server.sim.now_ms()
    faults.listed_at["SOLUSDT"] = now - 30 * 60_000
    rows = (await client.get("/futures/data/openInterestHist",
                             params={"symbol": "SOLUSDT", "period": "5m", "limit": 100})).json()
    assert 5 <= len(rows) <= 7 and all(r["timestamp"] >= now - 30 * 60_000 for r in rows)
    faults.listed_at["SOLUSDT"] = now + 1
    assert (await client.get("/futures/data/openInterestHist",
                             params={"symbol": "SOLUSDT", "period": "5m"})).json() == []


def test_faults_validation():
    f = Faults()
    with pytest.raises(ValueError):
        f.add("teapot")
    with pytest.raises(ValueError):
        f.add("429", times=0)
    with pytest.raises(ValueError):
        f.add("value", symbol="BTCUSDT")                              # which field?


# ---------------------------------------------------------------------------------------------
# standalone runner


async def test_standalone_runner_subprocess():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.demo_market.binance_server", "--port", "0", "--symbols", "20", "--seed", "7",
         "--speed", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=15)
        url = line.strip()
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})
            assert r.status_code == 200 and WEIGHT_HEADER in r.headers
            rows = (await client.get("/fapi/v1/ticker/24hr")).json()
            assert len(rows) == 23
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# klines


async def test_klines_shape_weight_and_consistency(env):
    server, client, _, _ = env
    now = server.sim.clock()
    server.sim.clock = lambda: now        # the market stands still: both requests below see one instant
    r = await client.get("/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1h",
                                                     "limit": 120})
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 120 and all(len(row) == 12 for row in rows)
    assert weight(r) == 2                                    # limit in [100, 500) weighs 2
    opens = [row[0] for row in rows]
    assert opens == sorted(opens) and all(b - a == 3_600_000 for a, b in zip(opens, opens[1:]))
    for o_t, o, h, lo, c, vol, close_t, qv, n, tb, tbq, _ in rows:
        assert close_t == o_t + 3_599_999 and isinstance(n, int) and n > 0
        assert float(lo) <= min(float(o), float(c)) <= max(float(o), float(c)) <= float(h)
        assert 0 < float(tb) < float(vol) and 0 < float(tbq) < float(qv)
    mark = (await client.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})).json()
    assert abs(float(rows[-1][4]) / float(mark["markPrice"]) - 1) < 1e-6  # last candle is open
    start = rows[10][0] + 1
    later = (await client.get("/fapi/v1/klines", params={
        "symbol": "BTCUSDT", "interval": "1h", "startTime": start, "limit": 3})).json()
    assert [row[0] for row in later] == opens[11:14] and later == rows[11:14]


async def test_klines_errors(env):
    _, client, _, _ = env
    r = await client.get("/fapi/v1/klines", params={"symbol": "BTCUSDT"})
    assert r.json()["code"] == -1102
    r = await client.get("/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1s"})
    assert r.json()["code"] == -1120
    r = await client.get("/fapi/v1/klines", params={"symbol": "NOPEUSDT", "interval": "1h"})
    assert r.json()["code"] == -1121
    r = await client.get("/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1h",
                                                     "limit": 1501})
    assert r.status_code == 400
