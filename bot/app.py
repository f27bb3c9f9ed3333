"""`python -m bot run`: one asyncio process — scheduler, engine, delivery worker, chat adapters.

Chat adapters are enabled by their environment variables (TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN,
DISCORD_WEBHOOK_URL); with none set, alerts and a periodic ranked table go to the console.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .adapters.console import ConsoleSender
from .config import Config
from .engine import CycleReport, Engine, Recipient, Route
from .exchange.binance import BinanceClient
from .outbox import DeliveryWorker, Sender
from .rules import FilterSubscriber
from .store import Store
from .watchlists import WatchlistRegistry

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 9.0
HOUSEKEEPING_S = 5.0


@dataclass
class Services:
    """Everything a running bot holds; chat adapters read from it (latest scores, watchlists, store)."""
    cfg: Config
    store: Store
    client: BinanceClient
    watchlists: WatchlistRegistry
    console: ConsoleSender
    senders: dict[str, Sender] = field(default_factory=dict)
    adapters: list = field(default_factory=list)          # started/stopped chat adapters
    extra_recipients: list = field(default_factory=list)  # callables -> list[Recipient] (e.g. Discord channels)
    engine: Engine | None = None
    worker: DeliveryWorker | None = None
    universe: set[str] = field(default_factory=set)

    def recipients(self) -> list[Recipient]:
        chat = [c for c in self.senders if c != "console"]
        out = []
        for uid, wl in self.watchlists.items():
            routes = []
            if wl.telegram_chat_id is not None and "telegram" in self.senders:
                routes.append(Route("telegram", str(wl.telegram_chat_id)))
            if wl.discord_user_id is not None and "discord-dm" in self.senders:
                routes.append(Route("discord-dm", str(wl.discord_user_id)))
            if not chat:
                routes.append(Route("console", uid))
            if routes:
                out.append(Recipient(uid, wl, routes))
        for extra in self.extra_recipients:
            out += extra()
        if not chat and not out:       # nothing configured at all: market-wide alerts on the console
            out.append(Recipient("console", FilterSubscriber.from_filter(self.cfg.console), [Route("console", "console")]))
        return out

    def latest(self) -> tuple[int | None, list[dict]]:
        return self.store.latest_scores()


def build_services(cfg: Config, db_path: str, watchlist_dir: str | Path, alert_log: str | None = None,
                   exchange_url: str | None = None, include_examples: bool = False) -> Services:
    store = Store(db_path)
    client = BinanceClient(cfg.exchange, base_url=exchange_url)
    svc = Services(cfg=cfg, store=store, client=client, watchlists=None, console=ConsoleSender(alert_log=alert_log))
    svc.watchlists = WatchlistRegistry(watchlist_dir, universe=lambda: svc.universe, include_examples=include_examples)
    for problem in svc.watchlists.load_all():
        log.warning("watchlist problem: %s", problem)
    svc.senders["console"] = svc.console
    return svc


def enable_chat_adapters(svc: Services) -> None:
    """Telegram / Discord from the environment; each is optional and independent."""
    if os.environ.get("TELEGRAM_BOT_TOKEN"):
        from .adapters.telegram import TelegramAdapter
        svc.adapters.append(TelegramAdapter.from_env(svc))
    webhook_envs = {w.url_env for w in svc.cfg.discord.webhooks}
    if os.environ.get("DISCORD_BOT_TOKEN") or any(os.environ.get(e) for e in webhook_envs):
        from .adapters.discord import DiscordAdapter
        svc.adapters.append(DiscordAdapter.from_env(svc))


def _next_boundary(interval_s: float, now: float | None = None) -> datetime:
    now = time.time() if now is None else now
    return datetime.fromtimestamp(math.ceil(now / interval_s) * interval_s, timezone.utc)


class TablePrinter:
    """Console: the ranked table after the first cycle and every N cycles after."""

    def __init__(self, svc: Services, every: int):
        self.svc, self.every, self.count = svc, every, 0

    def __call__(self, report: CycleReport) -> None:
        if self.count % self.every == 0:
            ts, results = self.svc.latest()
            self.svc.console.print_table(ts, results)
        self.count += 1


def housekeeping(svc: Services) -> None:
    changed, errors = svc.watchlists.reload_if_changed()
    if changed:
        log.info("watchlists reloaded: %s", ", ".join(changed))
    for e in errors:
        log.warning("watchlist problem (last good version stays active): %s", e)


def hourly_housekeeping(svc: Services) -> None:
    # Retention is counted back from the exchange's time of the last cycle, never the local clock:
    # a server clock hours off would otherwise delete the history the changes are computed from.
    last = svc.store.last_cycle()
    if last:
        pruned = svc.store.prune_history(last["ts"] - svc.cfg.history.retention_hours * 3_600_000)
        log.info("history pruned rows=%d", pruned)
    from .outcomes import record_outcomes
    record_outcomes(svc.store)


async def run_bot(svc: Services, stop: asyncio.Event, show_table: bool = True) -> None:
    """Run until `stop` is set; then finish or park work and return within ~10 s."""
    cfg = svc.cfg
    engine = Engine(cfg, svc.store, svc.client, svc.recipients, progress=_backfill_progress())
    svc.engine = engine
    worker = DeliveryWorker(svc.store, svc.senders, on_permanent=lambda *a: _on_permanent(svc, *a))
    svc.worker = worker

    def after_cycle(report: CycleReport) -> None:
        svc.universe = set(engine.collector.universe)
        worker.wake()

    engine.on_cycle.append(after_cycle)
    if show_table:
        engine.on_cycle.append(TablePrinter(svc, cfg.engine.table_every_cycles))

    for adapter in svc.adapters:
        await adapter.start()
    try:
        await engine.warm_up()
    except Exception as e:   # the exchange is down at start: the scheduled cycles keep trying
        log.error("warm-up failed (the cycles will retry): %s", e)
    interval_s = cfg.engine.interval_minutes * 60
    scheduler = AsyncIOScheduler(timezone=timezone.utc, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": cfg.engine.misfire_grace_s})
    scheduler.add_job(engine.scheduled_cycle, IntervalTrigger(seconds=interval_s, start_date=_next_boundary(interval_s)),
                      id="cycle", next_run_time=datetime.now(timezone.utc))
    scheduler.add_job(housekeeping, IntervalTrigger(seconds=HOUSEKEEPING_S), args=[svc], id="watchlists")
    scheduler.add_job(hourly_housekeeping, IntervalTrigger(hours=1), args=[svc], id="prune",
                      next_run_time=datetime.now(timezone.utc) + timedelta(minutes=1))
    scheduler.start()
    worker_stop = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(worker_stop))
    log.info("engine started interval=%.0fs adapters=%s", interval_s, [type(a).__name__ for a in svc.adapters] or ["console"])
    await stop.wait()

    deadline = time.monotonic() + SHUTDOWN_BUDGET_S
    log.info("stopping: no new cycles; finishing the current one and pending deliveries")
    scheduler.pause()
    while engine.cycle_lock.locked() and time.monotonic() < deadline - 3:
        await asyncio.sleep(0.05)
    scheduler.shutdown(wait=False)        # cancels a cycle still running: it commits atomically, nothing half-done
    worker_stop.set()
    worker.wake()
    try:
        await asyncio.wait_for(worker_task, timeout=max(0.1, deadline - 1.5 - time.monotonic()))
    except asyncio.TimeoutError:
        log.warning("delivery still running at shutdown: parked, it resumes on the next start")
    for adapter in reversed(svc.adapters):
        try:
            await asyncio.wait_for(adapter.stop(), timeout=max(0.1, deadline - time.monotonic()))
        except Exception as e:
            log.warning("adapter %s stop: %s", type(adapter).__name__, e)
    await svc.client.aclose()
    svc.store.close()
    log.info("stopped")


def _on_permanent(svc: Services, recipient: str, channel: str, address: str, error: str) -> None:
    """A blocked user or a deleted channel: stop sending there, once, and say so."""
    if channel in ("telegram", "discord-dm") and svc.watchlists.get(recipient) is not None:
        asyncio.get_running_loop().create_task(svc.watchlists.set_fields(recipient, active=False))
        log.warning("recipient %s marked inactive after: %s", recipient, error)
    for adapter in svc.adapters:
        disable = getattr(adapter, "disable_route", None)
        if disable:
            disable(channel, address, error)


def _backfill_progress():
    from .cli import progress_printer
    return progress_printer("cold start: backfilling 24h of open interest")


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
