"""The live engine: each cycle scores the market and turns changes into queued alerts.

Data flows one way: market source (the collector, scored) -> rules (pure) -> outbox (SQLite) -> the
delivery worker -> chat adapters. A cycle's scores, rule state, signals, cooldowns and outbox rows
are committed in one transaction, so a restart neither repeats nor loses an alert.

Two clocks. The exchange's time (the cycle's `ts`, premiumIndex `time`) is the market's clock: cycle and signal
times, cooldowns (last-fired times are stored on it and compared with the next cycle's ts) and, in the app, history
retention. The engine's local `clock` is the user's wall clock: mutes (set by commands on that clock), quiet hours
and the outbox's `created`/`due` times, which the delivery worker compares with the same local clock. When the two
disagree by more than `engine.clock_skew_warn_s` the engine logs one warning (and one line when they agree again).

Before fetching and again before committing, the engine asks the store whether its file is still durable
(`Store.check_file`): a database file deleted or replaced under the running bot stops the cycles (nothing is
fetched or committed, one ERROR per scheduled cycle) until the bot is restarted on a real file.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from .config import Config
from .cycle import CollectorSource, CycleOutcome, MarketSource
from .exchange.binance import BinanceClient, BinanceError
from .market import MarketCollector, Progress
from .outcomes import OutcomeTracker
from .records import Closing, CycleRecord, FiredRow, OutboxEntry, SignalReceipt, SignalRecord, SymbolStateRow
from .rules import Delivery, Event, SymbolState, Subscriber, detect, route, thresholds_in_use
from .sealing import Sealer
from .store import DatabaseError, Store, StoreUnavailable

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def signal_id(ts: int, symbol: str, rule: str) -> str:
    """Short, stable id: the same event always gets the same id (idempotent on re-runs)."""
    digest = hashlib.sha1(f"{ts}:{symbol}:{rule}".encode()).digest()
    return base64.b32encode(digest).decode()[:8]


@dataclass(frozen=True)
class Route:
    """Where a recipient's alerts go: channel name (telegram, discord-dm, discord-channel, webhook,
    console) and the address on it."""
    channel: str
    address: str


@dataclass
class Recipient:
    id: str
    subscriber: Subscriber
    routes: list[Route]


@dataclass
class CycleReport:
    ts: int
    scored: int
    failed: dict[str, str]
    events: list[Event]
    deliveries: list[Delivery]
    duration_s: float
    requests: int
    weight: int


@dataclass
class Engine:
    cfg: Config
    store: Store
    client: BinanceClient
    recipients: Callable[[], list[Recipient]]       # evaluated every cycle (watchlists hot-reload)
    clock: Clock = utcnow
    progress: Progress | None = None
    on_cycle: list[Callable[[CycleReport], None]] = field(default_factory=list)
    source: MarketSource | None = None      # where cycles come from; None: the exchange via the collector
    sealer: Sealer | None = None            # signs each cycle's seal; None: the database's key (bot.sealing)
    tracker: OutcomeTracker | None = None   # closes open signals each cycle (bot.outcomes); None: none closed

    def __post_init__(self) -> None:
        self.market: MarketSource = self.source or CollectorSource(self.cfg, self.client, self.store,
                                                                   progress=self.progress)
        self._state: dict[str, SymbolState] | None = None
        self.sealer = self.sealer or Sealer.for_database(self.store.path)
        self.cycle_lock = asyncio.Lock()
        self.cycles_run = 0
        self.clock_offset_ms: int | None = None   # exchange time minus the local clock, at the last cycle
        self.ticks_skipped = 0                     # scheduler ticks that found the previous cycle still running
        self._clock_skewed = False

    @property
    def collector(self) -> MarketCollector | None:
        """The real source's collector (its universe); None when cycles come from another source."""
        return getattr(self.market, "collector", None)

    def _load_state(self) -> dict[str, SymbolState]:
        return {s: SymbolState.from_row(*row) for s, row in self.store.load_symbol_state().items()}

    async def run_once(self) -> CycleReport:
        async with self.cycle_lock:
            await asyncio.to_thread(self._check_store)     # a deleted database: do not even poll the exchange
            if self._state is None:
                self._state = await asyncio.to_thread(self._load_state)
            out = await self.market.next_cycle()
            closings = await self._closings(out.ts)
            report = await asyncio.to_thread(self._evaluate_and_commit, out, closings)
            self.cycles_run += 1
        for cb in self.on_cycle:
            try:
                cb(report)
            except Exception:   # a listener must never break the engine
                log.exception("cycle listener failed")
        return report

    async def _closings(self, ts: int) -> list[Closing]:
        """The signals that closed by this cycle's time, to commit and seal with it; a failure closes none."""
        if self.tracker is None:
            return []
        try:
            return await self.tracker.closings(ts)
        except Exception:
            log.exception("closing signals failed this cycle; they stay open")
            return []

    def _check_store(self) -> None:
        """Raise StoreUnavailable when the database file is gone or replaced; log a writability problem."""
        problem = self.store.check_file()
        if problem:
            log.error("database: %s; fix it before the next restart", problem)

    def _note_clock(self, out: CycleOutcome, now_ms: int) -> int:
        """Exchange time minus the local clock; one warning when they drift apart (the exchange's time is read
        at the start of the cycle's fetch, so the cycle's duration is taken off the local reading)."""
        offset = out.ts - now_ms
        skew = offset + int(out.duration_s * 1000)
        limit_s = self.cfg.engine.clock_skew_warn_s
        skewed = limit_s is not None and abs(skew) > limit_s * 1000
        if skewed and not self._clock_skewed:
            log.warning("clock: the exchange's time (cycle ts=%d) is %s %s this machine's clock; cooldowns and "
                        "history retention follow the exchange's time, quiet hours, mutes and delivery times the "
                        "local clock (check NTP)", out.ts, _span(abs(skew)), "ahead of" if skew > 0 else "behind")
        elif self._clock_skewed and not skewed:
            log.info("clock: the exchange's time and this machine's clock agree again (within %s)", _span(abs(skew)))
        self._clock_skewed = skewed
        self.clock_offset_ms = offset
        return offset

    def _evaluate_and_commit(self, out: CycleOutcome, closings: list[Closing] = ()) -> CycleReport:
        now = self.clock()                  # the local clock: mutes, quiet hours, outbox times
        now_ms = int(now.timestamp() * 1000)
        offset = self._note_clock(out, now_ms)
        results = out.result_dicts()
        recipients = {r.id: r for r in self.recipients()}
        subs = {rid: r.subscriber for rid, r in recipients.items()}
        thresholds = thresholds_in_use(subs.values(), self.cfg.rules, self.cfg.score)
        events, new_state = detect(self._state or {}, results, thresholds, self.cfg.rules, out.ts)
        max_cooldown_ms = int(max([s.cooldown_minutes for s in subs.values()] + [0]) * 60_000)
        # Cooldowns run on the exchange's time: last-fired times are stored as cycle ts and read back relative to
        # this cycle's ts, then shifted onto the local clock `route` compares with (now - last == ts - fired ts).
        last = {k: datetime.fromtimestamp((v - offset) / 1000, timezone.utc)
                for k, v in self.store.load_last_fired(out.ts - max_cooldown_ms).items()}
        deliveries, fired = route(events, subs, last, now, self.cfg.score)

        ids = {(e.symbol, e.rule): signal_id(out.ts, e.symbol, e.rule) for e in events}
        signals = [SignalRecord(id=ids[(e.symbol, e.rule)], ts=out.ts, symbol=e.symbol, rule=e.rule, kind=e.kind,
                                score=e.score, bias=e.result["bias"], regime=e.result["regime"],
                                receipt=_receipt(e)) for e in events]
        outbox = [OutboxEntry(key=f"{out.ts}:{d.recipient}:{rt.channel}:{rt.address}" + (":held" if d.hold_until else ""),
                              recipient=d.recipient,
                              channel=rt.channel, address=rt.address, created=now_ms,
                              due=int(d.hold_until.timestamp() * 1000) if d.hold_until else now_ms,
                              signal_ids=[ids[(e.symbol, e.rule)] for e in d.events])
                  for d in deliveries for rt in recipients[d.recipient].routes]
        state_rows = {s: SymbolStateRow(st.score, st.bias, st.regime_key, st.armed, st.regime_cycles, st.timing())
                      for s, st in new_state.items()}
        cycle = CycleRecord(ts=out.ts, duration_s=out.duration_s, requests=out.requests, weight=out.weight,
                            failed=out.data.failed)
        self.store.check_file()             # raises if deleted while the cycle ran: commit nothing
        self.store.commit_alert_cycle(cycle, results, state_rows, signals,
                                      [FiredRow(r, s, rule, out.ts) for r, s, rule in fired], outbox,
                                      seal=self.sealer.prepare(out.ts, results, closings), closings=closings)
        self._state = new_state
        log.info("alerts ts=%d events=%d deliveries=%d queued=%d closed=%d", out.ts, len(events), len(deliveries),
                 len(outbox), len(closings))
        return CycleReport(out.ts, len(results), out.data.failed, events, deliveries, out.duration_s,
                           out.requests, out.weight)

    async def warm_up(self) -> None:
        """Cold start: backfill OI history (with progress) before the first scheduled cycle; a warm
        start finds the history in the store and fetches nothing more. A source without `warm_up` has
        nothing to backfill."""
        warm_up = getattr(self.market, "warm_up", None)
        if warm_up is None:
            return
        errors = await warm_up()
        if errors:
            log.warning("backfill failed for %d symbols; they get history from our own cycles", len(errors))

    async def scheduled_cycle(self) -> None:
        """The scheduler's job: a cycle is time-limited, never overlaps the next and a failure never stops the
        next. A tick that finds the previous cycle still running is skipped silently; the overrun is reported
        once, when that cycle ends (one line, with the ticks it cost)."""
        if self.cycle_lock.locked():
            self.ticks_skipped += 1
            return
        interval = self.cfg.engine.interval_minutes * 60
        timeout = max(self.cfg.engine.cycle_time_limit_min_s, interval * 0.9)
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.run_once(), timeout=timeout)
            took = time.monotonic() - started
            if took > interval:
                log.warning("cycle took %.1fs, longer than its %gs interval: %d tick(s) skipped (never two cycles "
                            "at once)", took, interval, self.ticks_skipped)
        except asyncio.TimeoutError:
            log.error("cycle timed out after %.0fs; nothing from it was committed (%d tick(s) skipped)",
                      time.monotonic() - started, self.ticks_skipped)
        except BinanceError as e:      # the exchange is down or refusing: one line, the next cycle retries
            log.error("cycle failed: exchange request failed: %s", e)
        except StoreUnavailable as e:  # every cycle until a restart: the bot must not write to a vanished file
            log.error("cycle skipped: %s; the engine commits nothing until the bot is restarted on a real file "
                      "(queued alerts are still delivered)", e)
        except (sqlite3.Error, DatabaseError) as e:  # disk full, read-only file system, I/O error, server gone:
            e = getattr(e, "orig", None) or e          # nothing of the cycle was kept (the driver's own error)
            log.error("cycle failed: the database could not be written (%s: %s); nothing from this cycle was "
                      "committed, the next cycle tries again", type(e).__name__, e)
        except Exception as e:
            log.exception("cycle failed: %s", e)
        finally:
            self.ticks_skipped = 0


def _span(ms: int) -> str:
    s = ms / 1000
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _receipt(e: Event) -> SignalReceipt:
    """The exact inputs that fired a signal: raw exchange values, score inputs, contributions, the rule."""
    r = e.result
    return SignalReceipt(
        rule=e.rule, kind=e.kind, threshold=e.threshold, prev_score=e.prev_score,
        score=r["score"], band=r["band"], bias=r["bias"], regime=r["regime"], reason=r["reason"],
        contributions=r["contributions"], quadrant=r.get("quadrant"), warning=r.get("warning"),
        inputs={k: r.get(k) for k in ("funding_rate", "funding_interval_hours", "oi_change_1h", "oi_change_4h",
                                      "oi_change_24h", "basis", "price_change_1h", "price_change_24h")},
        raw=r.get("raw"), missing=r.get("missing", []),
    )
