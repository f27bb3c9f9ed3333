"""One scoring cycle: collect the market, score it (pure), store the results.

Shared by `scan` (one cycle) and the scheduled engine (`run`). The engine reads its cycles from a
`MarketSource`; `CollectorSource` is the real one (the exchange through the collector), tests pass their own.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol, cast

from .config import Config
from .exchange.binance import BinanceClient, BinanceError
from .market import CycleData, MarketCollector, Progress
from .records import ScoredRow
from .score import ScoreResult, score_all
from .store import Store

log = logging.getLogger(__name__)


class NothingScored(BinanceError):
    """Every symbol failed this cycle: nothing is stored, so the last good scores stay the latest
    (an empty cycle would hide them: `/top` would say the first cycle is still running)."""


def cycle_budget_s(cfg: Config) -> float:
    """How long a cycle may wait on the exchange: a little under the engine's limit for a cycle (90 % of
    the interval, at least 5 s), so a pause it cannot afford ends it with the reason instead of being cut
    off by that limit without one."""
    return 0.8 * max(5.0, cfg.engine.interval_minutes * 60 * 0.9)


@dataclass
class CycleOutcome:
    ts: int
    results: list[ScoreResult]
    data: CycleData
    duration_s: float
    requests: int
    weight: int
    max_used_weight_1m: int

    def result_dicts(self) -> list[ScoredRow]:
        """Results as stored: inputs, score fields and the raw receipt values."""
        return [cast(ScoredRow, dict(r.as_dict(), raw=self.data.raw.get(r.symbol))) for r in self.results]


async def run_cycle(cfg: Config, client: BinanceClient, store: Store, collector: MarketCollector | None = None,
                    progress: Progress | None = None, save: bool = True) -> CycleOutcome:
    """Collect and score; `save=False` leaves storing to the caller (the engine commits scores together
    with alert state in one transaction). Raises `CycleStopped` when the exchange refuses us (one line
    saying why) and `NothingScored` when every symbol failed — neither stores anything."""
    collector = collector or MarketCollector(client, store, cfg)
    started = time.perf_counter()
    client.begin_cycle(cycle_budget_s(cfg))
    data = await collector.collect(progress)
    if data.failed and not data.inputs:
        examples = "; ".join(f"{s}: {why}" for s, why in sorted(data.failed.items())[:3])
        raise NothingScored(f"no symbol could be scored this cycle ({len(data.failed)} failed, e.g. {examples}); "
                            f"the last stored scores stay the latest")
    results = await asyncio.to_thread(score_all, data.inputs, cfg.score)
    duration = time.perf_counter() - started
    out = CycleOutcome(ts=data.ts, results=results, data=data, duration_s=duration,
                       requests=client.stats.requests, weight=client.stats.weight,
                       max_used_weight_1m=client.stats.max_used_weight_1m)
    if save:
        await asyncio.to_thread(store.save_cycle, data.ts, duration, out.requests, out.weight,
                                out.result_dicts(), data.failed)
    log.info("cycle ts=%d duration=%.2fs requests=%d weight=%d used_weight_1m=%d scored=%d failed=%d",
             data.ts, duration, out.requests, out.weight, out.max_used_weight_1m, len(results), len(data.failed))
    return out


class MarketSource(Protocol):
    """Where the engine's cycles come from: one call, one scored (not yet stored) cycle. A source may
    also offer `async warm_up() -> dict[str, str]` (cold-start backfill; symbol -> error), which the
    engine calls before the first cycle."""

    async def next_cycle(self) -> CycleOutcome: ...


class CollectorSource:
    """The real market source: the exchange through the collector, scored; the engine stores it."""

    def __init__(self, cfg: Config, client: BinanceClient, store: Store, collector: MarketCollector | None = None,
                 progress: Progress | None = None):
        self.cfg, self.client, self.store, self.progress = cfg, client, store, progress
        self.collector = collector or MarketCollector(client, store, cfg)

    async def next_cycle(self) -> CycleOutcome:
        return await run_cycle(self.cfg, self.client, self.store, self.collector, self.progress, save=False)

    async def warm_up(self) -> dict[str, str]:
        """Cold start: backfill OI history before the first cycle; symbol -> error for those that failed."""
        self.client.begin_cycle(cycle_budget_s(self.cfg))
        return await self.collector.warm_up(self.progress)
