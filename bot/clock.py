"""Time as a seam: code that waits or measures elapsed time takes a `Clock`, so tests can move time
forward instantly instead of sleeping.

`SYSTEM_CLOCK` is the real one (time.monotonic, time.time, asyncio.sleep). `FakeClock` is for tests: its
`sleep` advances both readings by the requested amount at once and records it.
"""
from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that only moves when told to (`advance`) or when something sleeps on it: `sleep(s)`
    returns at once (after yielding to the event loop) with both readings `s` later."""

    def __init__(self, time: float = 1_800_000_000.0, monotonic: float = 10_000.0):
        self._time, self._monotonic = float(time), float(monotonic)
        self.sleeps: list[float] = []          # every sleep requested, in order

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._time

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._time += seconds
        self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
