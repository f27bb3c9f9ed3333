"""Durable delivery: the outbox rows the engine committed are sent by this worker and marked.

The due rows of one route (recipient, channel, address) go out as one `Digest`: held quiet-hour rows and a
cycle's alerts due at the same time become one message per recipient and channel. A digest too big for one
platform message is several *parts*; the sender says what they are (`Sender.render`: HTML chunks for
Telegram, embed messages for Discord, one line for the console) and sends one at a time (`Sender.send_part`).

Progress is the store's, not the sender's. The worker claims the rows ('sending'), sends the parts after the
rows' `parts_sent` in order, and commits `parts_sent` after each part the platform accepted (the last one
marks the rows 'sent' in the same transaction). A retryable failure (429 retry_after, network, 5xx) puts the
rows back to 'pending' with their progress; a restart after a crash finds them 'sending', asks the sender
whether the digest arrived (`was_delivered`, for sinks that can tell) and otherwise resumes at the first
part not recorded. The rows of a digest that has begun keep their grouping (`digest_key`), so the resumed
digest is the same digest, and `render` is deterministic, so it is cut into the same parts.

The guarantee, per part. Exactly once: a part the store records as sent is never sent again (through
retries, restarts and kills), and the parts go out in order. A part not recorded is sent again until the
platform accepts it, the error is permanent (reported once through `on_permanent`, the rows 'failed') or
MAX_ATTEMPTS claims failed. The one window where a part can repeat: the platform accepted it and the
process died before its `parts_sent` was committed (chat APIs take no idempotency key; Telegram and
webhooks cannot be asked afterwards, while Discord bot mode's `was_delivered` finds the last part's `ref`
marker) -- then that one part, never an earlier one, is sent once more after the restart. The commit is
durable against a killed process (SQLite WAL); a power loss may also drop the last commits
(synchronous=NORMAL), which widens that window to the parts committed just before it.

Notices (a day's published root, a LiqMap proximity) are rows that carry a `Notice` instead of signal ids
(`notice_entries` builds them, `Store.enqueue_notices` queues them once per key). Each is its own digest
(`Digest.notice`), rendered by the same senders and delivered under the same guarantee; it is never a signal.

Several workers (PostgreSQL; `python -m bot run --role delivery`): each claims at most `batch` routes at a time,
with a lease (`store.LEASE_MS`). A worker that dies leaves its rows 'sending'; once their lease is over, any worker
settles them (`recover`, also run every `RECOVER_EVERY_S`) as after a restart, and the next claim sends the rest.
On SQLite there is one process, so at start it settles every 'sending' row at once, leased or not.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Protocol, Sequence, TypeVar

from .clock import SYSTEM_CLOCK, Clock
from .records import Notice, OutboxEntry, OutboxRow, OutboxStatus, StoredSignal
from .store import LEASE_MS, Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BATCH_ROUTES = 100       # routes one worker claims at a time: a batch is sent well inside its lease
RECOVER_EVERY_S = 5.0    # how often a worker looks for rows whose worker died (their lease over)


@dataclass
class Digest:
    recipient: str
    keys: list[str]               # outbox idempotency keys merged into this message
    signals: list[StoredSignal]   # signal rows (with receipts), highest score first
    held: bool = False            # released after quiet hours
    notice: Notice | None = None  # a notice row's digest: this text, no signals (each notice is its own digest)


def notice_entries(notice: Notice, stamp: str, routes: Iterable[tuple[str, str, str]], now_ms: int) -> list[OutboxEntry]:
    """One outbox row per route (recipient, channel, address) for this notice. `stamp` (no ':') makes the key
    unique -- the idempotency identity, e.g. the day of a root; the key keeps the alert keys' shape
    ("{stamp}:{recipient}:{channel}:{address}:{kind}", which `was_delivered` reads)."""
    if ":" in stamp:
        raise ValueError(f"notice stamp {stamp!r} must not contain ':'")
    return [OutboxEntry(key=f"{stamp}:{recipient}:{channel}:{address}:{notice['kind']}", recipient=recipient,
                        channel=channel, address=address, created=now_ms, due=now_ms, signal_ids=[], notice=notice)
            for recipient, channel, address in routes]


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.permanent, self.retry_after = permanent, retry_after


PartT = TypeVar("PartT")


class Sender(Protocol[PartT]):
    """One outbox channel. The worker owns the progress; a sender only renders and sends."""
    channel: str

    def render(self, digest: Digest) -> Sequence[PartT]:
        """The platform messages of a digest, in order. Deterministic (the same digest gives the same parts),
        since a resume skips the first `parts_sent` of them."""
        ...

    async def send_part(self, address: str, part: PartT, digest: Digest) -> None:
        """Send one part; return once the platform accepted it. Raise DeliveryError (permanent or with
        retry_after) when it did not; any other exception is retried with backoff."""
        ...

    async def was_delivered(self, key: str) -> bool | None:
        """After a crash: did the whole digest with this key arrive? None: cannot tell."""
        ...


OnPermanent = Callable[[str, str, str, str], None]   # (recipient, channel, address, error)
OnRetry = Callable[[str, str], None]                 # (channel, error)


class DeliveryWorker:
    """`now_ms` (or `clock`, whose `time()` it reads) decides which rows are due; tests inject a FakeClock.
    The polling interval of `run` is real time.

    `paused()` names the channels whose platform is down right now (the app's adapter supervision): their rows
    are not claimed, so they stay 'pending' with no attempt counted until the channel is back. `on_retry` hears
    of every retryable failure without a retry_after (network, 5xx), so the app can check whether the platform
    itself is down."""

    def __init__(self, store: Store, senders: dict[str, Sender[Any]], on_permanent: OnPermanent | None = None,
                 concurrency: int = 8, now_ms: Callable[[], int] | None = None, clock: Clock = SYSTEM_CLOCK,
                 paused: Callable[[], Collection[str]] | None = None, on_retry: OnRetry | None = None,
                 name: str = "", batch: int = BATCH_ROUTES, lease_s: float = LEASE_MS / 1000):
        self.store, self.senders = store, senders
        self.name, self.batch = name, batch      # who claims (kept on the rows), routes per claim
        self.lease_ms = int(lease_s * 1000)      # a claim's lease: after it, another worker may take the rows
        self.on_permanent = on_permanent
        self.paused = paused or (lambda: ())
        self.on_retry = on_retry
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._now_ms = now_ms or (lambda: int(clock.time() * 1000))
        self.sent_messages = 0          # digests delivered
        self.sent_parts = 0             # platform messages they took

    def wake(self) -> None:
        self._wake.set()

    async def recover(self, *, at_start: bool = True) -> None:
        """Rows left 'sending' by a crash: delivered (sink can tell) -> sent, else pending again (with the
        parts already recorded: the next delivery resumes after them). A shared database (several workers) only
        gives up rows whose lease is over, each only if no one settled or claimed it meanwhile; a database of one
        process (SQLite) gives up all of them at start."""
        if at_start and not self.store.shared:
            claims = [(row, None) for row in await asyncio.to_thread(self.store.outbox_by_status, "sending")]
        else:
            claims = await asyncio.to_thread(self.store.expired_claims, self._now_ms())
        for row, lease in claims:
            sender = self.senders.get(row["channel"])
            done = await sender.was_delivered(row["key"]) if sender else None
            status: OutboxStatus = "sent" if done else "pending"
            sent = self._now_ms() if done else None
            if lease is None and not self.store.shared:
                await asyncio.to_thread(self.store.mark_outbox, [row["id"]], status, sent=sent)
            elif not await asyncio.to_thread(self.store.settle_expired, row["id"], lease, status, sent):
                continue
            log.info("outbox recover %s -> %s (parts sent %d)", row["key"], status, row["parts_sent"])

    async def deliver_due(self) -> int:
        """Claim the due rows and send them: one digest per route, or per begun digest (whose rows stay
        together). A route's digests go out one after the other, a begun one first; routes concurrently.
        Returns the number of digests attempted."""
        rows = await asyncio.to_thread(self.store.claim_due, self._now_ms(), self.paused(), worker=self.name,
                                       max_routes=self.batch, lease_ms=self.lease_ms)
        routes: dict[tuple[str, str, str], dict[str | None, list[OutboxRow]]] = {}
        for r in rows:
            route = routes.setdefault((r["recipient"], r["channel"], r["address"]), {})
            alone = r["key"] if r.get("notice") else None    # a notice is never merged into an alert digest
            route.setdefault(r["digest_key"] or alone, []).append(r)
        await asyncio.gather(*(self._deliver_route(k, digests) for k, digests in routes.items()))
        return sum(len(d) for d in routes.values())

    async def _deliver_route(self, key: tuple[str, str, str], digests: dict[str | None, list[OutboxRow]]) -> None:
        begun = sorted((rows for dk, rows in digests.items() if dk is not None), key=lambda rows: rows[0]["id"])
        fresh = digests.get(None)
        for rows in [*begun, *([fresh] if fresh else [])]:
            await self._deliver_digest(key, rows)

    async def _deliver_digest(self, key: tuple[str, str, str], rows: list[OutboxRow]) -> None:
        recipient, channel, address = key
        ids = [r["id"] for r in rows]
        sender = self.senders.get(channel)
        if sender is None:
            await self._fail(rows, key, f"no sender for channel {channel!r} (not configured)", permanent=True)
            return
        signal_ids = list(dict.fromkeys(i for r in rows for i in r["signal_ids"]))
        signals = sorted(await asyncio.to_thread(self.store.signals, signal_ids),
                         key=lambda g: (-g["score"], g["symbol"])) if signal_ids else []
        digest = Digest(recipient, [r["key"] for r in rows], signals,
                        held=any(r["key"].endswith(":held") for r in rows), notice=rows[0].get("notice"))
        digest_key = rows[0]["digest_key"] or rows[0]["key"]
        done = min(r["parts_sent"] for r in rows)
        async with self._sem:
            try:
                parts = list(sender.render(digest))
                if done > len(parts):
                    log.warning("outbox %s: %d part(s) recorded as sent but the digest renders as %d; "
                                "treating it as delivered", digest_key, done, len(parts))
                if done >= len(parts):
                    await asyncio.to_thread(self.store.record_parts_sent, ids, done, digest_key,
                                            sent=self._now_ms())
                for i in range(done, len(parts)):
                    await sender.send_part(address, parts[i], digest)
                    self.sent_parts += 1
                    last = i == len(parts) - 1
                    await asyncio.to_thread(self.store.record_parts_sent, ids, i + 1, digest_key,
                                            sent=self._now_ms() if last else None)
            except DeliveryError as e:
                await self._fail(rows, key, str(e), permanent=e.permanent, retry_after=e.retry_after)
                return
            except Exception as e:   # an adapter bug or network error: keep the message, retry later
                log.exception("delivery to %s/%s failed", recipient, channel)
                await self._fail(rows, key, f"{type(e).__name__}: {e}")
                return
        self.sent_messages += 1
        log.info("delivered recipient=%s channel=%s %s parts=%d%s", recipient, channel,
                 f"notice={digest.notice['kind']}" if digest.notice else f"signals={len(signals)}",
                 len(parts), f" (resumed after {done})" if done else "")

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
        if retry_after is None and self.on_retry is not None:
            try:
                self.on_retry(key[1], error)
            except Exception:
                log.exception("on_retry hook failed")

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        await self.recover()
        loop = asyncio.get_running_loop()
        next_recover = loop.time() + RECOVER_EVERY_S
        while not stop.is_set():
            try:
                if self.store.shared and loop.time() >= next_recover:    # rows of a worker that died
                    next_recover = loop.time() + RECOVER_EVERY_S
                    await self.recover(at_start=False)
                if await self.deliver_due():
                    continue              # a full batch may have left more due: claim again at once
            except Exception:
                log.exception("delivery loop error")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_s)
            except asyncio.TimeoutError:
                pass
