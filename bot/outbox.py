"""Durable delivery: the outbox rows the engine committed are sent by this worker and marked.

A row is claimed ('sending') before the send and marked 'sent' after it. After a crash, a claimed row
is checked with the sender (`was_delivered`, for sinks that can tell) and otherwise sent again: for
chat APIs with no idempotency key that is the one narrow at-least-once window (a kill between the
platform accepting the message and our commit). Held quiet-hour digests and a cycle's alerts due at
the same time go out as one message per recipient and channel.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .records import OutboxRow, OutboxStatus, StoredSignal
from .store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


@dataclass
class Digest:
    recipient: str
    keys: list[str]               # outbox idempotency keys merged into this message
    signals: list[StoredSignal]   # signal rows (with receipts), highest score first
    held: bool = False            # released after quiet hours


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.permanent, self.retry_after = permanent, retry_after


class Sender(Protocol):
    channel: str

    async def send(self, address: str, digest: Digest) -> None: ...

    async def was_delivered(self, key: str) -> bool | None: ...   # None: cannot tell


OnPermanent = Callable[[str, str, str, str], None]   # (recipient, channel, address, error)


class DeliveryWorker:
    def __init__(self, store: Store, senders: dict[str, Sender], on_permanent: OnPermanent | None = None,
                 concurrency: int = 8, now_ms: Callable[[], int] | None = None):
        self.store, self.senders = store, senders
        self.on_permanent = on_permanent
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.sent_messages = 0

    def wake(self) -> None:
        self._wake.set()

    async def recover(self) -> None:
        """Rows left 'sending' by a crash: delivered (sink can tell) -> sent, else pending again."""
        for row in await asyncio.to_thread(self.store.outbox_by_status, "sending"):
            sender = self.senders.get(row["channel"])
            done = await sender.was_delivered(row["key"]) if sender else None
            status: OutboxStatus = "sent" if done else "pending"
            await asyncio.to_thread(self.store.mark_outbox, [row["id"]], status,
                                    sent=self._now_ms() if done else None)
            log.info("outbox recover %s -> %s", row["key"], status)

    async def deliver_due(self) -> int:
        rows = await asyncio.to_thread(self.store.claim_due, self._now_ms())
        groups: dict[tuple[str, str, str], list[OutboxRow]] = {}
        for r in rows:
            groups.setdefault((r["recipient"], r["channel"], r["address"]), []).append(r)
        await asyncio.gather(*(self._deliver_group(k, g) for k, g in groups.items()))
        return len(groups)

    async def _deliver_group(self, key: tuple[str, str, str], rows: list[OutboxRow]) -> None:
        recipient, channel, address = key
        ids = [r["id"] for r in rows]
        sender = self.senders.get(channel)
        if sender is None:
            await self._fail(rows, key, f"no sender for channel {channel!r} (not configured)", permanent=True)
            return
        signal_ids = list(dict.fromkeys(i for r in rows for i in r["signal_ids"]))
        signals = sorted(await asyncio.to_thread(self.store.signals, signal_ids),
                         key=lambda g: (-g["score"], g["symbol"]))
        digest = Digest(recipient, [r["key"] for r in rows], signals,
                        held=any(r["key"].endswith(":held") for r in rows))
        async with self._sem:
            try:
                await sender.send(address, digest)
            except DeliveryError as e:
                await self._fail(rows, key, str(e), permanent=e.permanent, retry_after=e.retry_after)
                return
            except Exception as e:   # an adapter bug or network error: keep the message, retry later
                log.exception("delivery to %s/%s failed", recipient, channel)
                await self._fail(rows, key, f"{type(e).__name__}: {e}")
                return
        await asyncio.to_thread(self.store.mark_outbox, ids, "sent", sent=self._now_ms())
        self.sent_messages += 1
        log.info("delivered recipient=%s channel=%s signals=%d", recipient, channel, len(signals))

    async def _fail(self, rows: list[OutboxRow], key: tuple[str, str, str], error: str, permanent: bool = False,
                    retry_after: float | None = None) -> None:
        ids = [r["id"] for r in rows]
        attempts = max(r["attempts"] for r in rows)
        if permanent or attempts >= MAX_ATTEMPTS:
            await asyncio.to_thread(self.store.mark_outbox, ids, "failed", error=error)
            log.warning("delivery failed for good recipient=%s channel=%s after %d attempt(s): %s",
                        key[0], key[1], attempts, error)
            if permanent and self.on_permanent:   # the route itself is gone (blocked, deleted): stop using it
                self.on_permanent(*key, error)
            return
        delay = retry_after if retry_after is not None else min(300, 2 ** attempts) * (0.5 + random.random())
        await asyncio.to_thread(self.store.mark_outbox, ids, "pending", error=error,
                                due=self._now_ms() + int(delay * 1000))
        log.warning("delivery retry in %.1fs recipient=%s channel=%s: %s", delay, key[0], key[1], error)

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        await self.recover()
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:
                log.exception("delivery loop error")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_s)
            except asyncio.TimeoutError:
                pass
