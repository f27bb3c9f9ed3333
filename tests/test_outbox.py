"""Durable delivery in-process: digests, held quiet-hour rows merged, retries keep the message,
permanent failures stop, a crash mid-send is recovered; and the engine's one-transaction commit."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest

from bot.adapters.console import ConsoleSender
from bot.config import AlertFilter, Config
from bot.engine import Engine, Recipient, Route
from bot.outbox import DeliveryError, DeliveryWorker
from bot.rules import FilterSubscriber, route
from bot.rules import Event
from bot.store import LEASE_MS, Store

NOW = 1_800_000_000_000


def signal(sid: str, symbol: str, score: int) -> dict:
    receipt = {"rule": "cross:35", "kind": "threshold", "threshold": 35, "prev_score": 30, "score": score,
               "band": "stretched", "bias": "LONG", "regime": "Net long bias building", "reason": "r",
               "components": {}, "inputs": {"funding_rate": 0.0005, "oi_change_1h": 0.01}, "raw": None}
    return dict(id=sid, ts=NOW, symbol=symbol, rule="cross:35", kind="threshold", score=score, bias="LONG",
                regime=receipt["regime"], receipt=receipt)


def queue(store: Store, rows: list[tuple[str, int, list[str]]], signals: list[dict]) -> None:
    store.commit_alert_cycle({"ts": NOW, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {}, signals, [],
                             [dict(key=k, recipient="alice", channel="console", address="alice", created=NOW, due=due,
                                   signal_ids=ids) for k, due, ids in rows])


class FlakySender:
    """A sender that fails in a scripted way, then works — recording what it delivered."""
    channel = "console"

    def __init__(self, failures: list[Exception]):
        self.failures, self.delivered = list(failures), []

    def render(self, digest):
        return [digest]

    async def send_part(self, address, part, digest):
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append((address, [s["id"] for s in digest.signals], digest.keys))

    async def was_delivered(self, key):
        return None


@pytest.fixture
def store(db_url):
    """A store on each engine (tests/conftest.py `db_url`: SQLite, PostgreSQL)."""
    s = Store(db_url)
    yield s
    s.close()


def after_a_crash(store: Store) -> int:
    """When a restarted worker may take over a dead worker's claims: at once on SQLite (one process: every claim
    is its own), after the lease on a shared database (the claimer might still be alive)."""
    return NOW + (LEASE_MS + 1 if store.shared else 0)


async def test_held_rows_and_new_rows_go_out_as_one_digest_ordered_by_score(store, tmp_path):
    queue(store, [("k1:held", NOW - 10, ["A"]), ("k2", NOW - 5, ["B"]), ("k3:held", NOW + 60_000, ["C"])],
          [signal("A", "AUSDT", 40), signal("B", "BUSDT", 61), signal("C", "CUSDT", 50)])
    out = io.StringIO()
    sender = ConsoleSender(stream=out, alert_log=tmp_path / "alerts.jsonl")
    worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: NOW)
    assert await worker.deliver_due() == 1
    text = out.getvalue()
    assert "2 alerts (held during quiet hours)" in text
    assert text.index("BUSDT 61") < text.index("AUSDT 40") and "CUSDT" not in text   # C is still held
    assert sorted(sender.delivered_keys()) == ["k1:held", "k2"]
    assert {r["key"]: r["status"] for r in store.outbox_rows()} == {"k1:held": "sent", "k2": "sent", "k3:held": "pending"}


async def test_retry_after_keeps_the_message_and_delivers_it_once(store):
    queue(store, [("k1", NOW, ["A"])], [signal("A", "AUSDT", 40)])
    clock = {"now": NOW}
    sender = FlakySender([DeliveryError("429 Too Many Requests", retry_after=3)])
    worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: clock["now"])
    await worker.deliver_due()
    (row,) = store.outbox_rows()
    assert row["status"] == "pending" and row["due"] == NOW + 3000 and "429" in row["last_error"]
    await worker.deliver_due()                      # not due yet
    assert sender.delivered == []
    clock["now"] += 3000
    await worker.deliver_due()
    assert sender.delivered == [("alice", ["A"], ["k1"])]
    await worker.deliver_due()
    assert len(sender.delivered) == 1 and store.outbox_rows()[0]["status"] == "sent"


async def test_permanent_failure_is_reported_once_and_not_retried(store):
    queue(store, [("k1", NOW, ["A"])], [signal("A", "AUSDT", 40)])
    reported = []
    sender = FlakySender([DeliveryError("Forbidden: bot was blocked by the user", permanent=True)])
    worker = DeliveryWorker(store, {"console": sender}, on_permanent=lambda *a: reported.append(a), now_ms=lambda: NOW)
    await worker.deliver_due()
    await worker.deliver_due()
    assert reported == [("alice", "console", "alice", "Forbidden: bot was blocked by the user")]
    assert store.outbox_rows()[0]["status"] == "failed" and sender.delivered == []


async def test_crash_between_send_and_mark_is_recovered_without_a_duplicate(store, tmp_path):
    queue(store, [("k1", NOW, ["A"]), ("k2", NOW, ["B"])], [signal("A", "AUSDT", 40), signal("B", "BUSDT", 45)])
    sender = ConsoleSender(stream=io.StringIO(), alert_log=tmp_path / "alerts.jsonl")
    claimed = store.claim_due(NOW)                 # the crashed process had claimed both ...
    from bot.outbox import Digest
    d = Digest("alice", ["k1"], [signal("A", "AUSDT", 40)])
    [part] = sender.render(d)
    await sender.send_part("alice", part, d)                     # ... and delivered k1 only
    assert {r["status"] for r in claimed} == {"sending"}
    worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: after_a_crash(store))
    await worker.recover()
    await worker.deliver_due()
    assert sorted(sender.delivered_keys()) == ["k1", "k2"]      # k1 not sent twice, k2 sent once
    assert {r["status"] for r in store.outbox_rows()} == {"sent"}


class PartsSender:
    """A sender whose digests are three parts ("<first key> 1/3" ...); `fail` maps a send_part call number
    (1-based, over the sender's life) to the error it raises instead of accepting."""
    channel = "console"

    def __init__(self, fail: dict[int, Exception] | None = None, accepted: list[str] | None = None):
        self.fail, self.calls = dict(fail or {}), 0
        self.accepted = accepted if accepted is not None else []   # shared across a "restart"

    def render(self, digest):
        return [f"{'+'.join(digest.keys)} {i}/3" for i in (1, 2, 3)]

    async def send_part(self, address, part, digest):
        self.calls += 1
        if self.calls in self.fail:
            raise self.fail.pop(self.calls)
        self.accepted.append(part)

    async def was_delivered(self, key):
        return None


async def test_retry_after_on_a_later_part_keeps_the_progress_and_never_repeats_a_part(store):
    queue(store, [("k1", NOW, ["A"]), ("k2", NOW, ["B"])], [signal("A", "AUSDT", 40), signal("B", "BUSDT", 45)])
    clock = {"now": NOW}
    sender = PartsSender({2: DeliveryError("429", retry_after=2)})
    worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: clock["now"])
    await worker.deliver_due()
    assert sender.accepted == ["k1+k2 1/3"]
    rows = store.outbox_rows()
    assert [(r["status"], r["parts_sent"], r["digest_key"], r["due"]) for r in rows] == [
        ("pending", 1, "k1", NOW + 2000)] * 2
    # a new row of the same route becomes due meanwhile: it is a digest of its own, after the begun one
    queue(store, [("k3", NOW + 2000, ["C"])], [signal("C", "CUSDT", 50)])
    clock["now"] += 2000
    assert await worker.deliver_due() == 2
    assert sender.accepted == ["k1+k2 1/3", "k1+k2 2/3", "k1+k2 3/3", "k3 1/3", "k3 2/3", "k3 3/3"]
    assert {(r["key"], r["status"], r["parts_sent"]) for r in store.outbox_rows()} == {
        ("k1", "sent", 3), ("k2", "sent", 3), ("k3", "sent", 3)}
    assert worker.sent_messages == 2 and worker.sent_parts == 6


async def test_permanent_error_on_a_later_part_is_reported_once_with_the_progress_kept(store):
    queue(store, [("k1", NOW, ["A"])], [signal("A", "AUSDT", 40)])
    reported = []
    sender = PartsSender({3: DeliveryError("Forbidden: bot was blocked by the user", permanent=True)})
    worker = DeliveryWorker(store, {"console": sender}, on_permanent=lambda *a: reported.append(a), now_ms=lambda: NOW)
    await worker.deliver_due()
    await worker.deliver_due()
    assert reported == [("alice", "console", "alice", "Forbidden: bot was blocked by the user")]
    (row,) = store.outbox_rows()
    assert row["status"] == "failed" and row["parts_sent"] == 2 and sender.accepted == ["k1 1/3", "k1 2/3"]


async def test_restart_resumes_at_the_first_part_not_recorded(db_url):
    """Killed between parts: a new worker on the same database file sends only the rest. Killed after the
    platform accepted a part but before its commit (the documented window): that one part, and no earlier
    one, is sent again."""
    import asyncio
    path = db_url
    first = Store(path)
    queue(first, [("k1", NOW, ["A"])], [signal("A", "AUSDT", 40)])
    accepted: list[str] = []
    committed = asyncio.Event()
    record = first.record_parts_sent

    def record_then_die_after_part_2(ids, parts_sent, digest_key, **kw):
        if parts_sent == 2:                        # part 2 was accepted; the process dies before the commit
            committed.set()
            raise asyncio.CancelledError()
        record(ids, parts_sent, digest_key, **kw)
    first.record_parts_sent = record_then_die_after_part_2
    worker = DeliveryWorker(first, {"console": PartsSender(accepted=accepted)}, now_ms=lambda: NOW)
    task = asyncio.create_task(worker.run(asyncio.Event(), poll_s=0.05))
    await asyncio.wait_for(committed.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert accepted == ["k1 1/3", "k1 2/3"]
    (row,) = first.outbox_rows()
    assert row["status"] == "sending" and row["parts_sent"] == 1
    first.close()

    second = Store(path)                           # the restart
    try:
        restarted = DeliveryWorker(second, {"console": PartsSender(accepted=accepted)},
                                   now_ms=lambda: after_a_crash(second))
        await restarted.recover()
        await restarted.deliver_due()
        assert accepted == ["k1 1/3", "k1 2/3", "k1 2/3", "k1 3/3"]   # part 2 repeats once; part 1 never
        (row,) = second.outbox_rows()
        assert row["status"] == "sent" and row["parts_sent"] == 3
    finally:
        second.close()


def test_an_existing_database_gets_the_progress_columns(tmp_path):
    """A database file made before digest progress existed opens with the new columns (old rows: nothing sent
    yet), keeps its rows, and opening it again changes nothing."""
    import sqlite3
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL, channel TEXT NOT NULL,
            address TEXT NOT NULL, created INTEGER NOT NULL, due INTEGER NOT NULL, signal_ids TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, sent INTEGER
        );
        INSERT INTO outbox (key, recipient, channel, address, created, due, signal_ids, status, attempts)
            VALUES ('old', 'alice', 'console', 'alice', 1, 2, '["A"]', 'sending', 1);
    """)
    db.commit()
    db.close()
    for opened in range(2):
        s = Store(path)
        try:
            (row,) = s.outbox_rows()
            assert row["key"] == "old" and row["status"] == "sending" and row["signal_ids"] == ["A"]
            assert (row["parts_sent"], row["digest_key"]) == ((0, None) if opened == 0 else (1, "old"))
            s.record_parts_sent([row["id"]], 1, "old")
        finally:
            s.close()
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(outbox)")]
    assert {"parts_sent", "digest_key", "lease_until", "worker", "notice"} <= set(columns) and len(columns) == len(set(columns))


def test_store_answers_named_outbox_queries_with_the_typed_records(store):
    """Callers ask the store by name (no SQL of their own) and get rows shaped as bot.records says."""
    from typing import get_type_hints

    from bot.records import OutboxRow, StoredCycle, StoredSignal
    queue(store, [("k1", NOW, ["A"]), ("k2", NOW + 60_000, ["B"])], [signal("A", "AUSDT", 40), signal("B", "BUSDT", 45)])
    (claimed,) = store.claim_due(NOW)
    assert [r["key"] for r in store.outbox_by_status("sending")] == ["k1"] == [claimed["key"]]
    assert [r["key"] for r in store.outbox_by_status("pending")] == ["k2"]
    assert store.outbox_row("k2")["due"] == NOW + 60_000 and store.outbox_row("nope") is None
    assert set(claimed) == set(get_type_hints(OutboxRow))
    assert set(store.signal("a")) == set(get_type_hints(StoredSignal))
    assert set(store.last_cycle()) == set(get_type_hints(StoredCycle))


def test_channel_filter_watches_the_whole_market_at_or_above_min_score():
    sub = FilterSubscriber.from_filter(AlertFilter(min_score=60, bands=["stretched", "stressed"]))
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)

    def ev(rule, score, kind="threshold", threshold=None, regime="net_long"):
        return Event("ANYUSDT", rule, kind, score, 10, {"regime_key": regime}, threshold)

    events = [ev("cross:35", 40, threshold=35), ev("cross:60", 61, threshold=60),
              ev("regime:short_squeeze_risk", 50, "regime", regime="short_squeeze_risk"),
              ev("regime:long_crowded", 70, "regime", regime="long_crowded")]
    (d,), _ = route(events, {"chan": sub}, {}, now, Config().score)
    assert [e.rule for e in d.events] == ["regime:long_crowded", "cross:60"]


async def test_engine_commits_alerts_and_state_together(db_url):
    """A cycle through the real Engine against the simulator: signals, outbox and state land together."""
    from bot.exchange.binance import BinanceClient
    from bot.demo_market.binance_server import BinanceSimServer
    from bot.demo_market.market import MarketSimulator
    now = [1_795_000_000.0]                                   # the market's clock: 10 minutes a cycle
    server = BinanceSimServer(MarketSimulator(n_symbols=30, seed=5, clock=lambda: now[0]))
    url = await server.start()
    cfg = Config(universe={"min_quote_volume": 0})
    store = Store(db_url)
    sub = FilterSubscriber.from_filter(AlertFilter(min_score=15, bands=["lean", "stretched", "stressed"],
                                                   cooldown_minutes=0))
    try:
        async with BinanceClient(cfg.exchange, base_url=url) as client:
            engine = Engine(cfg, store, client, lambda: [Recipient("chan", sub, [Route("console", "chan")])])
            await engine.warm_up()
            reports = []
            for _ in range(12):
                reports.append(await engine.run_once())
                now[0] += 600
    finally:
        await server.stop()
    assert reports[0].events == []                           # first sight never alerts
    events = [e for r in reports for e in r.events]
    assert events, "the fast-forwarded market produced no events"
    rows = store.outbox_rows()
    queued = {i for r in rows for i in r["signal_ids"]}
    stored = {g["id"] for g in store.recent_signals(1000)}
    assert queued <= stored and len(stored) == len(events)
    # a restart reads back exactly the rule state (armed thresholds, regimes) the engine holds
    restarted = Engine(cfg, store, client, engine.recipients)
    assert restarted._load_state() == engine._state and len(engine._state) >= 25
