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
from .exchange.binance import BinanceClient
from .market import CycleData, MarketCollector, Progress
from .records import ScoredRow
from .score import ScoreResult, score_all
from .store import Store

log = logging.getLogger(__name__)


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
    with alert state in one transaction)."""
    collector = collector or MarketCollector(client, store, cfg)
    started = time.perf_counter()
    client.stats.reset()
    data = await collector.collect(progress)
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
        return await self.collector.warm_up(self.progress)
