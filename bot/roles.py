"""Hosted roles: `python -m bot run --role all|engine|delivery|chat`, several processes on one PostgreSQL database.

    engine     the scheduled cycle (and hourly pruning / outcomes): exactly one process runs it at a time
    delivery   an outbox worker: any number; each claims routes with a lease (bot.outbox, bot.store.claim_due)
    chat       the chat adapters (exactly one process polls Telegram) and the web page
    all        all three (the default; the only role on SQLite, which serves one process)

"Exactly one" is a `Gate` over a PostgreSQL session advisory lock (`bot.database.Leadership`). A process that does
not hold it checks every `GATE_POLL_S` seconds; PostgreSQL frees the lock the moment the holder's connection ends,
which for a killed or crashed process is at once (its socket closes) and for a host that vanished is after the
TCP keepalives (`bot.database.KEEPALIVE_BOUND_S`). So another process is in charge within TAKEOVER_BOUND_S of the
holder dying. The holder checks its lock connection on the same schedule and stops leading when it is gone.

A process without the engine keeps its market snapshot (what /top and the web page show) current by reading the
last committed cycle when its time changes (`follow_cycles`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Literal

from .database import KEEPALIVE_BOUND_S, Leadership

log = logging.getLogger(__name__)

Role = Literal["all", "engine", "delivery", "chat"]
ROLES: tuple[Role, ...] = ("all", "engine", "delivery", "chat")
GATE_POLL_S = 2.0
TAKEOVER_BOUND_S = GATE_POLL_S + KEEPALIVE_BOUND_S     # the stated bound when the holder's host vanished
FOLLOW_S = 2.0                                          # how often a process without the engine looks for a new cycle


def runs(role: Role, part: Literal["engine", "delivery", "chat"]) -> bool:
    return role == "all" or role == part


class Gate:
    """Exactly one process of a database does `name`: `leading` says whether this one does. Without a Leadership
    (SQLite: one process, which holds the engine's file lock) it always leads."""

    def __init__(self, name: str, leadership: Leadership | None,
                 on_gain: Callable[[], Awaitable[None]] | None = None,
                 on_loss: Callable[[], Awaitable[None]] | None = None, poll_s: float = GATE_POLL_S):
        self.name, self.leadership, self.poll_s = name, leadership, poll_s
        self.on_gain, self.on_loss = on_gain, on_loss
        self.leading = leadership is None
        self.gained = asyncio.Event()
        if self.leading:
            self.gained.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Try to take the lock until this process holds it; then check it still does; until `stop`."""
        if self.leadership is None:
            return
        waiting_said = False
        while not stop.is_set():
            try:
                if not self.leading:
                    if await asyncio.to_thread(self.leadership.try_acquire):
                        self.leading = True
                        self.gained.set()
                        log.info("%s: this process is now in charge", self.name)
                        await self._call(self.on_gain)
                    elif not waiting_said:
                        waiting_said = True
                        log.info("%s: another process is in charge; standing by (taking over within %.0f s of "
                                 "it stopping)", self.name, TAKEOVER_BOUND_S)
                elif not await asyncio.to_thread(self.leadership.held):
                    self.leading = False
                    self.gained.clear()
                    waiting_said = False
                    await self._call(self.on_loss)
            except Exception as e:            # the database is unreachable: not in charge until it answers
                if self.leading:
                    self.leading = False
                    self.gained.clear()
                    await self._call(self.on_loss)
                log.warning("%s: cannot reach the database to check who is in charge: %s", self.name, e)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
            except asyncio.TimeoutError:
                pass

    async def _call(self, fn: Callable[[], Awaitable[None]] | None) -> None:
        if fn is None:
            return
        try:
            await fn()
        except Exception:
            log.exception("%s: changing charge failed", self.name)

    def release(self) -> None:
        if self.leadership is not None:
            self.leadership.release()
        self.leading = False


async def follow_cycles(last_ts: Callable[[], Awaitable[int | None]], publish: Callable[[], Awaitable[object]],
                        stop: asyncio.Event, every_s: float = FOLLOW_S) -> None:
    """For a process without the engine: publish the last committed cycle whenever a new one appears."""
    seen = None
    while not stop.is_set():
        try:
            ts = await last_ts()
            if ts is not None and ts != seen:
                await publish()
                seen = ts
        except Exception as e:
            log.warning("reading the last cycle failed (chat shows the previous one): %s", e)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except asyncio.TimeoutError:
            pass


def shared_pacer(reserve: Callable[[str, int, int], int], name: str, per_second: float) -> Callable[[], Awaitable[None]]:
    """Wait for this process's turn in a rate shared by every process (`Store.reserve_send_slot`): N delivery
    workers on one bot token send `per_second` messages a second between them, not N times that."""
    interval_us = max(1, int(1_000_000 / per_second))

    async def pace() -> None:
        now_us = int(time.time() * 1_000_000)
        slot = await asyncio.to_thread(reserve, name, interval_us, now_us)
        if slot > now_us:
            await asyncio.sleep((slot - now_us) / 1_000_000)
    return pace
