"""Notices in the outbox: a row carrying a short text (a published root, a LiqMap proximity) instead of signal
ids, delivered exactly once by the same worker and senders, never merged into an alert digest, never a signal."""
from __future__ import annotations

import io
import sqlite3

import pytest

from bot.adapters.console import ConsoleSender
from bot.adapters.discord.format import delivery_ref, digest_messages as discord_messages
from bot.adapters.telegram import digest_messages as telegram_messages
from bot.outbox import DeliveryError, DeliveryWorker, Digest, notice_entries
from bot.store import Store

NOW = 1_800_000_000_000
NOTICE = {"kind": "root", "title": "Signed root for 2027-01-14", "text": "root <abc> & more\nverify: python -m bot verify"}
ROUTE = ("alice", "console", "alice")


def signal(sid: str, symbol: str, score: int) -> dict:
    receipt = {"rule": "cross:35", "kind": "threshold", "threshold": 35, "prev_score": 30, "score": score,
               "band": "stretched", "bias": "LONG", "regime": "Net long bias building", "reason": "r",
               "components": {}, "inputs": {"funding_rate": 0.0005, "oi_change_1h": 0.01}, "raw": None}
    return dict(id=sid, ts=NOW, symbol=symbol, rule="cross:35", kind="threshold", score=score, bias="LONG",
                regime=receipt["regime"], receipt=receipt)


def queue_alert(store: Store, key: str, sid: str) -> None:
    store.commit_alert_cycle({"ts": NOW, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                             [signal(sid, "AUSDT", 40)], [],
                             [dict(key=key, recipient="alice", channel="console", address="alice", created=NOW,
                                   due=NOW, signal_ids=[sid])])


class FlakySender:
    """Fails in a scripted way, then works — recording what it delivered."""
    channel = "console"

    def __init__(self, failures: list[Exception]):
        self.failures, self.delivered = list(failures), []

    def render(self, digest):
        return [digest]

    async def send_part(self, address, part, digest):
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append((digest.keys, digest.notice and digest.notice["kind"], [s["id"] for s in digest.signals]))

    async def was_delivered(self, key):
        return None


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "n.db")
    yield s
    s.close()


def test_a_notice_is_queued_once_per_key_with_the_alert_key_shape(store):
    entries = notice_entries(NOTICE, "2027-01-14", [ROUTE, ("bob", "telegram", "42")], NOW)
    assert [e["key"] for e in entries] == ["2027-01-14:alice:console:alice:root", "2027-01-14:bob:telegram:42:root"]
    assert store.enqueue_notices(entries) == 2
    assert store.enqueue_notices(entries) == 0                   # a restart enqueues it again: nothing added
    row = store.outbox_row(entries[0]["key"])
    assert row["notice"] == NOTICE and row["signal_ids"] == [] and row["status"] == "pending"
    with pytest.raises(ValueError, match="must not contain"):
        notice_entries(NOTICE, "12:00", [ROUTE], NOW)


async def test_a_notice_goes_out_alone_next_to_an_alert_digest_and_is_never_a_signal(store, tmp_path):
    queue_alert(store, "a1", "A")
    store.enqueue_notices(notice_entries(NOTICE, "d1", [ROUTE], NOW))
    queue_alert(store, "a2", "B")
    out = io.StringIO()
    sender = ConsoleSender(stream=out, alert_log=tmp_path / "alerts.jsonl")
    worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: NOW)
    assert await worker.deliver_due() == 2                       # the alert digest (a1+a2) and the notice
    text = out.getvalue()
    assert "Signed root for 2027-01-14\nroot <abc> & more\nverify: python -m bot verify" in text
    assert "2 alerts" in text and text.count("🔔 alice:") == 2
    assert sorted(sender.delivered_keys()) == ["a1", "a2", "d1:alice:console:alice:root"]
    assert {r["status"] for r in store.outbox_rows()} == {"sent"}
    assert {s["id"] for s in store.recent_signals(recipient="alice", limit=2)} == {"A", "B"}   # no slot for the notice
    assert await worker.deliver_due() == 0 and out.getvalue() == text     # delivered once


async def test_a_notice_follows_the_retry_and_permanent_error_rules(store):
    store.enqueue_notices(notice_entries(NOTICE, "d1", [ROUTE], NOW))
    store.enqueue_notices(notice_entries({**NOTICE, "kind": "liqmap"}, "d1", [ROUTE], NOW))
    clock = {"now": NOW}
    reported = []
    sender = FlakySender([DeliveryError("429", retry_after=2), DeliveryError("blocked", permanent=True)])
    worker = DeliveryWorker(store, {"console": sender}, on_permanent=lambda *a: reported.append(a),
                            now_ms=lambda: clock["now"])
    await worker.deliver_due()
    rows = {r["key"]: r for r in store.outbox_rows()}
    assert rows["d1:alice:console:alice:root"]["due"] == NOW + 2000          # retry_after kept the message
    assert rows["d1:alice:console:alice:liqmap"]["status"] == "failed" and reported == [(*ROUTE, "blocked")]
    clock["now"] += 2000
    await worker.deliver_due()
    await worker.deliver_due()
    assert sender.delivered == [(["d1:alice:console:alice:root"], "root", [])]
    assert store.outbox_row("d1:alice:console:alice:root")["status"] == "sent"


async def test_a_crash_mid_send_of_a_notice_is_recovered_without_a_repeat(store, tmp_path):
    [entry] = notice_entries(NOTICE, "d1", [ROUTE], NOW)
    store.enqueue_notices([entry])
    sender = ConsoleSender(stream=io.StringIO(), alert_log=tmp_path / "alerts.jsonl")
    store.claim_due(NOW)                                          # the crashed process claimed it ...
    d = Digest("alice", [entry["key"]], [], notice=NOTICE)
    await sender.send_part("alice", sender.render(d)[0], d)      # ... printed it, and died before marking
    worker = DeliveryWorker(store, {"console": sender}, now_ms=lambda: NOW)
    await worker.recover()
    assert await worker.deliver_due() == 0
    assert sender.delivered_keys() == [entry["key"]] and store.outbox_row(entry["key"])["status"] == "sent"


def test_chat_senders_render_a_notice_in_their_own_message_shape():
    d = Digest("alice", ["d1:alice:webhook:main:root"], [], notice=NOTICE)
    [html] = telegram_messages(d)
    assert html == "<b>Signed root for 2027-01-14</b>\n\nroot &lt;abc&gt; &amp; more\nverify: python -m bot verify"
    [msg] = discord_messages(d)
    [embed] = msg["embeds"]
    assert "content" not in msg and embed["title"] == NOTICE["title"]
    assert "root <abc> & more" in embed["description"] and "python -m bot verify" in embed["description"]
    assert embed["footer"]["text"] == f"ref {delivery_ref(d.keys[0])}"      # what was_delivered looks for


def test_an_existing_outbox_gets_the_notice_column(tmp_path):
    """A database made before notices opens with the column (old rows: alert digests), once."""
    path = tmp_path / "old.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE outbox DROP COLUMN notice")
    db.execute("UPDATE alembic_version SET version_num = '0001'")     # as a database migrated before notices
    db.execute("INSERT INTO outbox (key, recipient, channel, address, created, due, signal_ids) "
               "VALUES ('old', 'alice', 'console', 'alice', 1, 2, '[\"A\"]')")
    db.commit()
    db.close()
    for _ in range(2):
        s = Store(path)
        try:
            (row,) = s.outbox_rows()
            assert row["signal_ids"] == ["A"] and row["notice"] is None
        finally:
            s.close()
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(outbox)")]
    assert columns[-1] == "notice" and len(columns) == len(set(columns))
