"""`python -m bot run`: one asyncio process — scheduler, engine, delivery worker, chat adapters.

Chat adapters are enabled by their environment variables (TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN,
DISCORD_WEBHOOK_URL); with none set, alerts and a periodic ranked table go to the console.

Adapters fail alone: each is started and watched by an `AdapterSupervisor`. A platform unreachable at start-up
(or found unreachable later, after a failed delivery) is retried with a growing, capped delay, one log line per
attempt, while its channels are paused in the delivery worker (their alerts stay pending in the outbox, no attempt
counted); scoring, the console, the other adapters and their deliveries carry on.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .adapters.base import AdapterRefused, ChatAdapter
from .adapters.console import ConsoleSender
from .clock import SYSTEM_CLOCK, Clock
from .config import Config
from .cycle import MarketSource
from .database import Leadership
from .engine import CycleReport, Engine, Recipient, Route
from .errors import UserError
from .exchange.binance import BinanceClient
from .outbox import DeliveryWorker, Sender
from .outcomes import OutcomeTracker, performance_report
from .progress import progress_printer
from .publication import RootPublisher, publish_routes
from .queries import MarketSnapshot, Snapshot, Stats
from .roles import Gate, Role, follow_cycles, runs, shared_pacer
from .rules import FilterSubscriber
from .sealing import Sealer, SigningKey, check_bundle, load_signing_key, signal_bundle
from .store import Store, StoreUnavailable
from .watchlists import WatchlistRegistry

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 9.0
HOUSEKEEPING_S = 5.0
ADAPTER_RETRY_S = (1.0, 60.0)       # an adapter's start / reachability retries: first delay, cap (doubling)
ADAPTER_FIRST_START_S = 25.0        # run_bot waits this long for the adapters' first attempts, then carries on


class BotQueries:
    """The live `bot.queries.Queries` port the commands get: the market snapshot from memory, the watchlist
    registry, and the database reads they need run in a worker thread (never on the event loop, where a
    commit holding the store's lock would stall every chat)."""

    def __init__(self, store: Store, watchlists: WatchlistRegistry, market: MarketSnapshot, public_key: str,
                 cfg: Config | None = None):
        self._store, self._watchlists, self._market = store, watchlists, market
        self.cfg = cfg or Config()          # evaluation, score and LiqMap settings the reports use
        self.public_key = public_key        # the signing key's public half: what seals are checked against

    @property
    def watchlists(self) -> WatchlistRegistry:
        return self._watchlists

    def snapshot(self) -> Snapshot:
        return self._market.current()

    async def recent_signals(self, recipient: str, limit: int = 15) -> list[dict]:
        return await asyncio.to_thread(self._store.recent_signals, limit, None, recipient)

    async def signal(self, signal_id: str) -> dict | None:
        return await asyncio.to_thread(self._store.signal, signal_id)

    async def stats(self) -> Stats:
        wls = self._watchlists.items()
        counts, last = await asyncio.to_thread(lambda: (self._store.outbox_counts(), self._store.last_cycle()))
        return Stats(len(wls), sum(1 for _, w in wls if w.active and w.alerts), counts, last)

    async def chart(self, symbol: str) -> bytes:
        from .chart import render_chart
        return await asyncio.to_thread(render_chart, self._store, symbol)

    async def liqmap(self, symbol: str, window: str) -> tuple[bytes, str]:
        from .liqmap import text
        from .liqmap_chart import render
        from .liqmap_feed import stored_view
        covered = self.cfg.liqmap.symbols
        if symbol not in covered:
            raise UserError(f"The LiqMap covers {', '.join(covered)} (liqmap.symbols); not {symbol}.")

        def build() -> tuple[bytes, str]:
            try:
                v = stored_view(self.cfg, self._store, symbol, window)
            except LookupError as e:
                raise UserError(f"{e}. Try again in a few minutes.") from None
            return render(v), f"{text(v.reading)}\n{v.footnote}"
        return await asyncio.to_thread(build)

    async def public_signals(self, limit: int = 50, symbol: str | None = None,
                             since_ms: int | None = None) -> list[dict]:
        """Market-wide signals, newest first (one symbol's, since a time): the web page's read, no recipient."""
        rows = await asyncio.to_thread(self._store.recent_signals, limit, [symbol] if symbol else None)
        return [r for r in rows if since_ms is None or r["ts"] >= since_ms]

    async def last_seal(self) -> dict | None:
        return await asyncio.to_thread(self._store.last_manifest)

    async def signal_proof(self, signal_id: str) -> tuple[dict, list] | None:
        bundle = await asyncio.to_thread(signal_bundle, self._store, signal_id)
        return None if bundle is None else (bundle, check_bundle(bundle, self.public_key))

    async def performance(self, symbol: str | None, days: int) -> dict:
        return await asyncio.to_thread(performance_report, self._store, self.cfg, days, symbol)


class SenderTable(Mapping[str, Sender]):
    """Outbox channel -> sender: the console's, then what each registered adapter's `senders()` offers at the
    moment of the lookup (an adapter that lost a channel, e.g. to a rejected bot token, stops offering it and
    its rows fail as "no sender"). Read-only: nothing writes into it, the app only registers adapters."""

    def __init__(self, console: Sender, adapters: list[ChatAdapter]):
        self._console, self._adapters = console, adapters

    def _table(self) -> dict[str, Sender]:
        table: dict[str, Sender] = {"console": self._console}
        for adapter in self._adapters:
            table.update(adapter.senders())
        return table

    def __getitem__(self, channel: str) -> Sender:
        return self._table()[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


class AdapterSupervisor:
    """Starts one chat adapter and brings it back when its platform is unreachable.

    `launch()` calls `adapter.start()` until it succeeds: after a failure it logs one line (attempt number, error,
    next delay) and waits, the delay doubling from `first_delay` up to `max_delay`. `AdapterRefused` (e.g. a
    rejected token) is logged once and not retried. Later, `suspect(channel)` (a retryable delivery failure on
    one of its channels) makes it check the platform with `adapter.probe()` when the adapter offers one, on the
    same schedule, until the check passes. While it is starting, retrying, checking or refused, its channels are
    `paused()`: the delivery worker leaves their rows pending (no attempt counted); `on_up` is called when it is
    back (the app wakes the worker). An adapter nobody launched (tests start adapters by hand) is never paused."""

    def __init__(self, adapter: ChatAdapter, on_up: Callable[[], None], clock: Clock = SYSTEM_CLOCK):
        self.adapter, self.on_up, self.clock = adapter, on_up, clock
        self.name = type(adapter).__name__.removesuffix("Adapter").lower() or type(adapter).__name__
        self.state = "idle"          # idle | starting | retrying | up | probing | refused | stopped
        self.attempts = 0            # start attempts so far
        self.first_delay, self.max_delay = ADAPTER_RETRY_S
        self.first_attempt = asyncio.Event()     # set once the first start attempt has returned or failed
        self._task: asyncio.Task | None = None

    def paused(self) -> set[str]:
        down = set(self.adapter.senders()) if self.state in ("starting", "retrying", "probing", "refused") else set()
        unavailable = getattr(self.adapter, "unavailable", None)      # channels the adapter itself says are down
        return down | (set(unavailable()) if unavailable is not None and self.state != "idle" else set())

    def launch(self, first_delay: float | None = None, max_delay: float | None = None) -> None:
        self.first_delay = first_delay if first_delay is not None else self.first_delay
        self.max_delay = max_delay if max_delay is not None else self.max_delay
        self.state = "starting"
        self._task = asyncio.get_running_loop().create_task(self._start_loop(), name=f"start-{self.name}")

    def _delays(self) -> Iterator[float]:
        delay = self.first_delay
        while True:
            yield delay
            delay = min(delay * 2, self.max_delay)

    async def _start_loop(self) -> None:
        delays = self._delays()
        while True:
            self.attempts += 1
            try:
                await self.adapter.start()
            except asyncio.CancelledError:
                raise
            except AdapterRefused as e:
                self.state = "refused"
                self.first_attempt.set()
                log.error("%s: refused at start-up: %s; not retrying (its alerts stay pending in the outbox until "
                          "a restart fixes it)", self.name, e)
                return
            except Exception as e:
                self.state = "retrying"
                self.first_attempt.set()
                delay = next(delays)
                log.warning("%s: start failed (attempt %d): %s; retrying in %s (its alerts wait in the outbox; "
                            "the rest of the bot keeps going)", self.name, self.attempts, _why(e), _secs(delay))
                await self.clock.sleep(delay)
                continue
            self.state = "up"
            self.first_attempt.set()
            if self.attempts > 1:
                log.info("%s: started after %d attempts; delivering its waiting alerts", self.name, self.attempts)
            self.on_up()
            return

    def suspect(self, channel: str, error: str) -> None:
        """A retryable delivery failure on `channel`: if it is ours and we can check, is the platform down?"""
        probe = getattr(self.adapter, "probe", None)
        if self.state != "up" or probe is None or channel not in self.adapter.senders():
            return
        self.state = "probing"
        self._task = asyncio.get_running_loop().create_task(self._probe_loop(probe, error), name=f"probe-{self.name}")

    async def _probe_loop(self, probe: Callable[[], Awaitable[None]], error: str) -> None:
        delays, checks = self._delays(), 0
        while True:
            checks += 1
            try:
                await probe()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                delay = next(delays)
                if checks == 1:
                    log.warning("%s: unreachable after a failed delivery (%s)", self.name, error)
                log.warning("%s: still unreachable (check %d): %s; checking again in %s (its alerts wait in the "
                            "outbox)", self.name, checks, _why(e), _secs(delay))
                await self.clock.sleep(delay)
                continue
            self.state = "up"
            if checks > 1:
                log.info("%s: reachable again after %d checks; delivering its waiting alerts", self.name, checks)
            self.on_up()
            return

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.state = "stopped"


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _secs(s: float) -> str:
    return f"{s:.3g}s"


# watchlist field naming the address -> the channel its alerts go to (when that channel has a sender)
WATCHLIST_ROUTES = (("telegram_chat_id", "telegram"), ("discord_user_id", "discord-dm"))


@dataclass
class Services:
    """What the running bot holds (the composition root's own state). Commands see only `queries`; adapters
    get their config, the port and a store handle, and are `register`ed here: nothing outside writes into it."""
    cfg: Config
    store: Store
    client: BinanceClient
    watchlists: WatchlistRegistry
    console: ConsoleSender
    signing: SigningKey                                         # signs the cycles' seals (bot.sealing)
    market: MarketSnapshot = field(default_factory=MarketSnapshot)
    adapters: list[ChatAdapter] = field(default_factory=list)   # started/stopped chat adapters
    supervisors: list[AdapterSupervisor] = field(default_factory=list)   # one per adapter, same order
    engine: Engine | None = None
    worker: DeliveryWorker | None = None
    gates: dict = field(default_factory=dict)                  # bot.roles.Gate per "exactly one" part (run_bot)
    queries: BotQueries = field(init=False)
    senders: SenderTable = field(init=False)

    def __post_init__(self) -> None:
        self.queries = BotQueries(self.store, self.watchlists, self.market, self.signing.public_key, self.cfg)
        self.senders = SenderTable(self.console, self.adapters)

    def register(self, adapter: ChatAdapter) -> ChatAdapter:
        """Take a chat adapter: start/stop it with the bot, deliver on its senders, route to its recipients."""
        if not isinstance(adapter, ChatAdapter):
            raise TypeError(f"{type(adapter).__name__} does not implement the ChatAdapter protocol")
        clash = set(adapter.senders()) & set(self.senders)
        if clash:
            raise ValueError(f"{type(adapter).__name__}: channel(s) {sorted(clash)} already have a sender")
        self.adapters.append(adapter)
        self.supervisors.append(AdapterSupervisor(adapter, on_up=self._adapter_up))
        return adapter

    def _adapter_up(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def paused_channels(self) -> set[str]:
        """Channels whose platform is down right now: the delivery worker leaves their rows pending."""
        return set().union(*(s.paused() for s in self.supervisors))

    def suspect(self, channel: str, error: str) -> None:
        """The delivery worker's retryable failure on `channel`: let its adapter's supervisor check the platform."""
        for s in self.supervisors:
            s.suspect(channel, error)

    def recipients(self) -> list[Recipient]:
        """Watchlists (routed to their chats) plus each adapter's own recipients; called every cycle."""
        channels = set(self.senders)
        chat = channels - {"console"}
        out = []
        for uid, wl in self.watchlists.items():
            routes = [Route(channel, str(getattr(wl, attr))) for attr, channel in WATCHLIST_ROUTES
                      if getattr(wl, attr) is not None and channel in channels]
            if not chat:
                routes.append(Route("console", uid))
            if routes:
                out.append(Recipient(uid, wl, routes))
        for adapter in self.adapters:
            out += adapter.recipients()
        if not chat and not out:       # nothing configured at all: market-wide alerts on the console
            out.append(Recipient("console", FilterSubscriber.from_filter(self.cfg.console), [Route("console", "console")]))
        return out

    async def refresh_market(self, universe: set[str] | None = None) -> Snapshot:
        """Publish the last committed cycle's scores (read in a worker thread) and, if given, the universe."""
        ts, results = await asyncio.to_thread(self.store.latest_scores)
        return self.market.publish(ts, results, universe)


EXIT_ALREADY_RUNNING = 75       # EX_TEMPFAIL: another engine holds the database; start again once it has stopped


class AlreadyRunning(Exception):
    """Another process runs an engine on this database; str() names it and is meant for the operator."""


def engine_lock_path(db_path: str) -> Path | None:
    """`<db>.lock` beside a SQLite database (None in memory: there is nothing to share; None for a server database,
    where the engine's lock is an advisory lock in the database itself: bot.roles)."""
    from .database import sqlite_file
    db_path = sqlite_file(db_path) or ""
    return None if db_path in ("", ":memory:") or db_path.startswith("file:") else Path(f"{db_path}.lock")


def hold_engine_lock(db_path: str):
    """One engine per database: an exclusive flock on `<db>.lock`, taken before the store is opened and held for
    the life of the process (the OS drops it when the process ends, even on SIGKILL). Returns the open lock file
    (closing it releases the lock); raises AlreadyRunning naming the holder's pid."""
    import fcntl
    path = engine_lock_path(db_path)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read(32).strip() or "?"
        f.close()
        raise AlreadyRunning(f"another bot is already running on {db_path} (pid {pid}); "
                             "not starting a second engine") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def engine_holder(db_path: str) -> str | None:
    """The pid (as the holder wrote it) of the engine running on `db_path`, or None. A probe: holds nothing."""
    import fcntl
    from .database import engine_lock_holder, sqlite_file
    if sqlite_file(db_path) is None:          # a server database: who holds the engine's advisory lock
        holder = engine_lock_holder(db_path, "engine")
        return None if holder is None else f"server process {holder}"
    path = engine_lock_path(db_path)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:               # no lock file: no engine ever ran there
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)            # closing drops the probe's shared lock
    return None


def build_services(cfg: Config, db_path: str, watchlist_dir: str | Path, alert_log: str | None = None,
                   exchange_url: str | None = None, include_examples: bool = False) -> Services:
    signing = load_signing_key(db_path, create=True)      # BOT_SIGNING_KEY, else <db>.signing-key (made once)
    store = Store(db_path)
    client = BinanceClient(cfg.exchange, base_url=exchange_url)
    market = MarketSnapshot()
    watchlists = WatchlistRegistry(watchlist_dir, universe=lambda: market.current().universe,
                                   include_examples=include_examples, documents=watchlist_documents(store))
    svc = Services(cfg=cfg, store=store, client=client, watchlists=watchlists, market=market,
                   console=ConsoleSender(alert_log=alert_log), signing=signing)
    for problem in svc.watchlists.load_all():
        log.warning("watchlist problem: %s", problem)
    return svc


def watchlist_documents(store: Store):
    """Where the watchlists live: in the database when it was given as a URL (DATABASE_URL: hosted, where the
    disk does not last), else files in the watchlist folder (None: the registry's default)."""
    from .database import is_url
    from .watchlists import DatabaseDocuments, Limits
    return DatabaseDocuments(store, Limits()) if is_url(store.path) else None


def enable_chat_adapters(svc: Services) -> None:
    """Telegram / Discord from the environment; each is optional and independent."""
    if os.environ.get("TELEGRAM_BOT_TOKEN"):
        from .adapters.telegram import TelegramAdapter
        svc.register(TelegramAdapter.from_env(svc.cfg.telegram, svc.queries,
                                              max_import_bytes=svc.watchlists.limits.max_file_bytes))
    webhook_envs = {w.url_env for w in svc.cfg.discord.webhooks}
    webhook_envs |= {e for e in [svc.cfg.receipts.publish.discord_webhook_url_env] if e}   # the daily root's
    if os.environ.get("DISCORD_BOT_TOKEN") or any(os.environ.get(e) for e in webhook_envs):
        from .adapters.discord import DiscordAdapter
        svc.register(DiscordAdapter.from_env(svc.cfg, svc.queries, svc.store))


def enable_web(svc: Services, host: str, port: int, announce: Callable[[str], None] | None = None) -> None:
    """The reference page and its JSON API on host:port (0: a free port), started and stopped with the bot like
    an adapter; `announce(url)` once it listens."""
    from .adapters.web import WebServer
    svc.register(WebServer(svc.queries, svc.cfg.score, svc.cfg.engine.interval_minutes * 60, host, port,
                           announce=announce))


def _next_boundary(interval_s: float, now: float | None = None) -> datetime:
    now = time.time() if now is None else now
    return datetime.fromtimestamp(math.ceil(now / interval_s) * interval_s, timezone.utc)


class TablePrinter:
    """Console: the ranked table after the first cycle and every N cycles after (from the published snapshot)."""

    def __init__(self, svc: Services, every: int):
        self.svc, self.every, self.count = svc, every, 0

    def __call__(self, report: CycleReport) -> None:
        if self.count % self.every == 0:
            snap = self.svc.market.current()
            self.svc.console.print_table(snap.ts, list(snap.results))
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
    try:
        svc.store.check_file()
    except StoreUnavailable:          # the engine reports it every cycle; nothing here would survive a restart
        return
    last = svc.store.last_cycle()
    if last:
        pruned = svc.store.prune_history(last["ts"] - svc.cfg.history.retention_hours * 3_600_000)
        h = svc.cfg.history
        thinned = svc.store.thin_history(last["ts"] - int(h.fine_hours * 3_600_000), int(h.coarse_step_minutes * 60_000))
        thinned_scores = svc.store.thin_scores(last["ts"] - int(h.scores_fine_hours * 3_600_000), h.scores_step_ms)
        log.info("history pruned rows=%d thinned=%d score rows thinned=%d", pruned, thinned, thinned_scores)


async def run_bot(svc: Services, stop: asyncio.Event, show_table: bool = True,
                  on_ready: Callable[[], None] | None = None, adapter_retry: tuple[float, float] = ADAPTER_RETRY_S,
                  clock: Clock = SYSTEM_CLOCK, source: MarketSource | None = None, role: Role = "all") -> None:
    """Run until `stop` is set; then finish or park work and return within ~10 s. `on_ready` is called once
    the cold start (backfill) is done, right before the first cycle. `adapter_retry` is the adapters' retry
    schedule (first delay, cap); `clock` is the delivery worker's and the adapter supervisors' clock; `source`
    replaces the exchange as the engine's market source (tests). `role` (bot.roles) says which parts this process
    runs; on a shared database (PostgreSQL) the engine and Telegram polling run only while this process is the
    one in charge of them (a `Gate`), and the others take over when it stops."""
    cfg = svc.cfg
    with_engine, with_delivery, with_chat = (runs(role, p) for p in ("engine", "delivery", "chat"))
    if svc.store.shared:              # several processes may send as the bot: one rate between them
        for adapter in svc.adapters:
            sender = getattr(adapter, "sender", None)
            if hasattr(sender, "pace"):
                sender.pace = shared_pacer(svc.store.reserve_send_slot, f"{adapter.channel}-bot",
                                           cfg.telegram.bot_messages_per_s)
    engine = Engine(cfg, svc.store, svc.client, svc.recipients, progress=_backfill_progress(), source=source,
                    sealer=Sealer(svc.signing),
                    # signals close on the exchange's candles: only when the cycles come from the exchange
                    tracker=OutcomeTracker(cfg.evaluation, svc.store, svc.client) if source is None else None)
    svc.engine = engine
    worker = delivery_worker(svc, clock)
    svc.worker = worker
    gates = role_gates(svc, engine, with_engine, with_chat)
    svc.gates = gates

    printer = TablePrinter(svc, cfg.engine.table_every_cycles) if show_table else None
    publishing: set[asyncio.Task] = set()
    roots = RootPublisher(svc.store, publish_routes(cfg.receipts.publish), clock)   # receipts.publish

    async def publish(report: CycleReport) -> None:
        try:
            await svc.refresh_market()
        except Exception:
            log.exception("publishing the cycle's scores failed (chat commands show the previous cycle)")
        try:
            if await asyncio.to_thread(roots.after_cycle, report.ts):
                worker.wake()
        except Exception:
            log.exception("queueing the daily signed root failed (the next cycle tries again)")
        if printer is not None:
            printer(report)

    def after_cycle(report: CycleReport) -> None:
        """On the loop, right after the commit: deliver now; publish the new scores to the snapshot the chat
        commands read (the read runs in a thread, so the loop never waits on the store)."""
        worker.wake()
        log.info("heartbeat role=%s cycle_ts=%d scored=%d events=%d", role, report.ts, report.scored,
                 len(report.events))
        if engine.collector is not None and engine.collector.universe:
            svc.market.set_universe(engine.collector.universe)
        task = asyncio.get_running_loop().create_task(publish(report))
        publishing.add(task)
        task.add_done_callback(publishing.discard)

    engine.on_cycle.append(after_cycle)
    try:
        await svc.refresh_market()            # a restart answers /top from the last stored cycle at once
    except Exception as e:
        log.warning("no stored scores to publish yet: %s", e)

    # chat adapters start where chat or delivery runs; the web page (no channel of its own: /healthz) wherever PORT
    launched = [s for s in svc.supervisors if with_chat or with_delivery or not s.adapter.senders()]
    for adapter in svc.adapters:              # only the process in charge of Telegram polls it; the rest send
        if hasattr(adapter, "poll"):
            adapter.poll = with_chat and gates["chat"].leadership is None
    for sup in launched:              # each adapter starts (and retries) on its own: one down stops nothing else
        sup.clock = clock
        sup.launch(*adapter_retry)
    if launched:                      # wait (bounded) for each first attempt, so a reachable platform is up at once
        waits = [asyncio.create_task(s.first_attempt.wait()) for s in launched]
        await asyncio.wait(waits, timeout=ADAPTER_FIRST_START_S)
        for w in waits:
            w.cancel()
    gate_stop = asyncio.Event()
    background = [asyncio.create_task(g.run(gate_stop), name=f"gate-{name}") for name, g in gates.items()]
    if not with_engine:
        background.append(asyncio.create_task(follow_cycles(
            lambda: asyncio.to_thread(lambda: (svc.store.last_cycle() or {}).get("ts")), svc.refresh_market,
            gate_stop), name="follow-cycles"))
    warmed = False

    async def warm_up() -> None:
        nonlocal warmed
        if warmed:
            return
        warmed = True
        try:
            await engine.warm_up()
        except Exception as e:   # the exchange is down at start: the scheduled cycles keep trying
            log.error("warm-up failed (the cycles will retry): %s", e)

    async def scheduled_cycle() -> None:
        if not with_engine or not gates["engine"].leading:
            return                        # another process runs the engine (or none of this role's business)
        await warm_up()
        await engine.scheduled_cycle()

    if with_engine and gates["engine"].leading:
        await warm_up()
    if on_ready is not None:
        on_ready()
    interval_s = cfg.engine.interval_minutes * 60
    scheduler = AsyncIOScheduler(timezone=timezone.utc, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": cfg.engine.misfire_grace_s})
    if with_engine:
        # max_instances 2: a tick during an overrunning cycle reaches Engine.scheduled_cycle, which skips it quietly
        # and reports the overrun once (APScheduler would warn on every tick); the engine's lock keeps cycles one at
        # a time
        scheduler.add_job(scheduled_cycle, IntervalTrigger(seconds=interval_s, start_date=_next_boundary(interval_s)),
                          id="cycle", next_run_time=datetime.now(timezone.utc), max_instances=2)
        scheduler.add_job(_when_leading(gates["engine"], hourly_housekeeping), IntervalTrigger(hours=1), args=[svc],
                          id="prune", next_run_time=datetime.now(timezone.utc) + timedelta(minutes=1))
    scheduler.add_job(housekeeping, IntervalTrigger(seconds=HOUSEKEEPING_S), args=[svc], id="watchlists")
    # the LiqMap's refresh and force-order recorder go with the engine (one process records); a replaced market
    # source (tests): no LiqMap
    feed = liqmap_feed(svc) if source is None and with_engine else None
    if feed is not None:
        scheduler.add_job(_when_leading_async(gates["engine"], feed.scheduled_refresh),
                          IntervalTrigger(seconds=cfg.liqmap.refresh_minutes * 60), id="liqmap",
                          next_run_time=datetime.now(timezone.utc))
        if gates["engine"].leading:
            feed.start_recording()

    async def engine_gained() -> None:        # took over: a cycle at once, and the recorder
        await _run_now(scheduler, "cycle")
        if feed is not None:
            feed.start_recording()

    async def engine_lost() -> None:
        if feed is not None:
            await feed.stop()
    gates["engine"].on_gain, gates["engine"].on_loss = engine_gained, engine_lost
    scheduler.start()
    worker_stop = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(worker_stop)) if with_delivery else None
    log.info("engine started interval=%.0fs adapters=%s receipts signed by public key %s role=%s", interval_s,
             [type(a).__name__ for a in svc.adapters] or ["console"], svc.signing.public_key, role)
    await stop.wait()

    deadline = time.monotonic() + SHUTDOWN_BUDGET_S
    log.info("stopping: no new cycles; finishing the current one and pending deliveries")
    scheduler.pause()
    for sup in svc.supervisors:       # no start or reachability retry outlives the bot
        await sup.stop()
    while engine.cycle_lock.locked() and time.monotonic() < deadline - 3:
        await asyncio.sleep(0.05)
    scheduler.shutdown(wait=False)        # cancels a cycle still running: it commits atomically, nothing half-done
    gate_stop.set()
    if publishing:                        # a snapshot read in flight finishes before the store closes
        await asyncio.wait(publishing, timeout=max(0.1, deadline - 2 - time.monotonic()))
    worker_stop.set()
    worker.wake()
    if worker_task is not None:
        try:
            await asyncio.wait_for(worker_task, timeout=max(0.1, deadline - 1.5 - time.monotonic()))
        except asyncio.TimeoutError:
            log.warning("delivery still running at shutdown: parked, it resumes on the next start")
    for adapter in reversed(svc.adapters):
        try:
            await asyncio.wait_for(adapter.stop(), timeout=max(0.1, deadline - time.monotonic()))
        except Exception as e:
            log.warning("adapter %s stop: %s", type(adapter).__name__, e)
    if feed is not None:
        await feed.stop()
    await asyncio.wait(background, timeout=max(0.1, deadline - time.monotonic()))
    for g in gates.values():
        g.release()
    await svc.client.aclose()
    svc.store.close()
    log.info("stopped")


def liqmap_feed(svc: Services):
    """The LiqMap's refresh job and force-order recorder (none when liqmap.symbols is empty)."""
    from .liqmap_feed import LiqMapFeed, stream_url_for
    if not svc.cfg.liqmap.symbols:
        return None
    from .liqmap_alerts import ProximityAlerts
    feed = LiqMapFeed(svc.cfg, svc.client, svc.store, stream_url_for(svc.cfg.liqmap.stream_url, svc.client.base_url))
    feed.proximity = ProximityAlerts(svc.cfg, svc.store, svc.recipients).check     # watchlists' liqmap_within_pct
    feed.on_queued = lambda: svc.worker.wake() if svc.worker is not None else None  # deliver them now
    return feed


def role_gates(svc: Services, engine: Engine, with_engine: bool, with_chat: bool) -> dict[str, Gate]:
    """The "exactly one process" parts: the engine and Telegram polling. On a shared database each is a Gate over
    an advisory lock; on SQLite (one process) they always lead. Telegram polling follows its gate."""
    shared = svc.store.shared

    def leadership(name: str) -> Leadership | None:
        return Leadership(svc.store.engine, name) if shared else None

    telegram = [a for a in svc.adapters if hasattr(a, "start_polling")]

    async def poll() -> None:
        for a in telegram:
            a.poll = True                 # (an adapter still starting polls once it is up)
            await a.start_polling()

    async def unpoll() -> None:
        for a in telegram:
            a.poll = False
            await a.stop_polling()

    gates = {"engine": Gate("engine", leadership("engine") if with_engine else None)}
    gates["chat"] = Gate("telegram-poller", leadership("telegram-poller") if with_chat and telegram else None,
                         on_gain=poll, on_loss=unpoll)
    return gates


async def _run_now(scheduler: AsyncIOScheduler, job_id: str) -> None:
    job = scheduler.get_job(job_id)
    if job is not None:
        job.modify(next_run_time=datetime.now(timezone.utc))


def _when_leading(gate: Gate, fn: Callable[[Services], None]) -> Callable[[Services], None]:
    def run(svc: Services) -> None:
        if gate.leading:
            fn(svc)
    return run


def _when_leading_async(gate: Gate, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        if gate.leading:
            await fn()
    return run


def delivery_worker(svc: Services, clock: Clock = SYSTEM_CLOCK) -> DeliveryWorker:
    """The outbox worker over the registered senders; a permanent failure disables the route; the channels of an
    adapter that is down are paused (their rows stay pending) and a retryable failure lets its supervisor check
    the platform. `clock` says when rows are due (tests pass a FakeClock)."""
    return DeliveryWorker(svc.store, svc.senders, on_permanent=lambda *a: _on_permanent(svc, *a), clock=clock,
                          paused=svc.paused_channels, on_retry=svc.suspect,
                          name=f"{socket.gethostname()}:{os.getpid()}", lease_s=svc.cfg.storage.outbox_lease_s)


def _on_permanent(svc: Services, recipient: str, channel: str, address: str, error: str) -> None:
    """A blocked user or a deleted channel: stop sending there, once, and say so."""
    if channel in {c for _, c in WATCHLIST_ROUTES} and svc.watchlists.get(recipient) is not None:
        asyncio.get_running_loop().create_task(svc.watchlists.set_fields(recipient, active=False))
        log.warning("recipient %s marked inactive after: %s", recipient, error)
    for adapter in svc.adapters:
        adapter.disable_route(channel, address, error)


def _backfill_progress():
    return progress_printer("cold start: backfilling 24h of open interest")


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
