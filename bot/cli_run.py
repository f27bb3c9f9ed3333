"""CLI commands of the live engine: run, demo, signal, verify (their parsers: bot/cli.py)."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import report
from .cli import utc_ms, web_address  # noqa: F401  (argparse types, defined with the parsers in bot/cli.py)
from .config import Config, resolve_db_path
from .store import Store

DEMO_TIMEOUT_HOURS = 2.0          # a demo signal's life (simulated hours)


def _web_from_env(args) -> tuple[str, int] | None:
    """`run`: --web, else PORT (on WEB_HOST, 127.0.0.1 unless told otherwise), else no web page."""
    if args.web:
        return args.web
    port = os.environ.get("PORT")
    return web_address(f"{os.environ.get('WEB_HOST') or '127.0.0.1'}:{port}") if port else None


def _announce(url: str) -> None:
    print(f"open {url}  (the pressure page; JSON at {url}/api/public/pressure)", flush=True)


async def _serve(cfg: Config, db: str, args, exchange_url: str | None, seconds: float | None,
                 include_examples: bool = False, on_ready=None, web: tuple[str, int] | None = None) -> None:
    from .app import (build_services, enable_chat_adapters, enable_web, hold_engine_lock, install_signal_handlers,
                      run_bot)
    role = getattr(args, "role", "all")
    check_role(db, role)
    lock = hold_engine_lock(db)          # one engine per SQLite database: before the store is even opened
    try:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        if seconds:
            asyncio.get_running_loop().call_later(seconds, stop.set)
        svc = build_services(cfg, db, args.watchlists, alert_log=args.alert_log, exchange_url=exchange_url,
                             include_examples=include_examples)
        enable_chat_adapters(svc)
        if web is not None:
            enable_web(svc, *web, announce=_announce)
        await run_bot(svc, stop, on_ready=on_ready, role=role)
    finally:
        if lock is not None:
            lock.close()


def check_role(db: str, role: str) -> None:
    """Roles apart need a database several processes share (PostgreSQL); a server database needs its signing key
    from the environment (a hosted worker's disk, where a key file would live, does not last)."""
    from .database import describe, sqlite_file
    from .errors import UserError
    from .sealing import SIGNING_KEY_ENV
    if sqlite_file(db) is not None:
        if role != "all":
            raise UserError(f"--role {role}: {describe(db)} is a SQLite database, which serves one process: run "
                            "--role all there, or set DATABASE_URL to a PostgreSQL database to run roles apart")
        return
    if not os.environ.get(SIGNING_KEY_ENV, "").strip():
        raise UserError(f"{describe(db)}: set {SIGNING_KEY_ENV} (64 hex characters, e.g. `openssl rand -hex 32`, "
                        "the same for every process): receipts are signed with it, and with a server database there "
                        "is no lasting disk to keep a key file on")


def _one_engine(run) -> int:
    """Run `run()`; a database another engine holds is a clear message and EXIT_ALREADY_RUNNING, nothing else."""
    from .app import EXIT_ALREADY_RUNNING, AlreadyRunning
    try:
        run()
    except AlreadyRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    return 0


def cmd_run(args, cfg: Config) -> int:
    try:
        web = _web_from_env(args)
    except argparse.ArgumentTypeError as e:
        print(f"error: PORT / WEB_HOST: {e}", file=sys.stderr)
        return 2
    return _one_engine(lambda: asyncio.run(_serve(cfg, resolve_db_path(args.db, cfg), args,
                                                  args.exchange_url or cfg.exchange.base_url, args.seconds,
                                                  web=web)))


def demo_config(cfg: Config, interval_s: float) -> Config:
    """The demo's exchange is our simulator: its cycles come every few wall seconds, so its (simulated)
    request-weight budget is declared larger to match; everything else is the real configuration."""
    return cfg.model_copy(update={
        # the simulated market runs ahead of the wall clock on purpose: no clock-skew warning
        "engine": cfg.engine.model_copy(update={"interval_minutes": interval_s / 60, "table_every_cycles": 10,
                                                "clock_skew_warn_s": None}),
        "exchange": cfg.exchange.model_copy(update={"weight_limit": 1_000_000, "data_limit_per_5m": 100_000}),
        # signals close within a short demo: its market runs ~200x real time, a 2 h life passes in ~36 s
        "evaluation": cfg.evaluation.model_copy(update={"timeout_hours": DEMO_TIMEOUT_HOURS, "per_kind": {}}),
    })


async def _demo(args, cfg: Config) -> None:
    from .demo_market.binance_server import BinanceSimServer
    from .demo_market.market import MarketSimulator
    # the market stands still until the bot's cold start is done: the first cycle sees it at its start
    sim = MarketSimulator(n_symbols=args.symbols, seed=args.seed, speed=args.speed, start_ms=args.start, held=True)
    server = BinanceSimServer(sim, weight_limit=1_000_000, futures_data_limit=100_000)
    url = await server.start()
    db = args.db or str(Path(tempfile.mkdtemp(prefix="pressure-demo-")) / "demo.db")
    print(f"Demo: market simulator on {url} ({args.symbols} symbols, time x{args.speed:g}, "
          f"a cycle every {args.interval:g}s = {args.interval * args.speed / 60:.0f} simulated minutes); "
          f"database {db}. Ctrl-C to stop.", flush=True)
    try:
        await _serve(demo_config(cfg, args.interval), db, args, url, args.seconds, include_examples=True,
                     on_ready=sim.release, web=args.web or ("127.0.0.1", 0))
    finally:
        await server.stop()


def cmd_demo(args, cfg: Config) -> int:
    return _one_engine(lambda: asyncio.run(_demo(args, cfg)))


def engine_last_cycle(db: str) -> tuple[int, list[dict], dict] | None:
    """For `scan` / `score`: when a `run` holds `db`, its last committed cycle (read-only) instead of a competing
    cycle of our own (which would poll the exchange beside it and write a cycle into its database); None when no
    engine runs there. UserError when the engine has not committed a cycle yet."""
    from .app import engine_holder
    from .errors import UserError
    pid = engine_holder(db)
    if pid is None:
        return None
    store = Store(db)
    try:
        last = store.last_cycle()
        ts, results = store.latest_scores()
    finally:
        store.close()
    if last is None or ts is None:
        raise UserError(f"a bot is running on {db} (pid {pid}) and has not committed a cycle yet; "
                        "try again in a minute (or use another --db)")
    when = datetime.fromtimestamp(ts / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"note: a bot is running on {db} (pid {pid}): showing its last cycle ({when}) instead of running "
          "a competing one", file=sys.stderr)
    return ts, results, dict(last["failed"])


def cmd_signal(args, cfg: Config) -> int:
    store = Store(resolve_db_path(args.db, cfg))
    try:
        sig = store.signal(args.id)
    finally:
        store.close()
    if sig is None:
        print(f"error: no signal {args.id!r} in {resolve_db_path(args.db, cfg)}", file=sys.stderr)
        return 1
    print(report.receipt_text(sig))
    return 0


def cmd_verify(args, cfg: Config) -> int:
    """Recompute every seal (or one signal's) from the stored rows: exit 0 when all verify, 1 at the first problem."""
    import json
    from . import sealing
    from .errors import UserError
    db = resolve_db_path(args.db, cfg)
    if args.public_key:
        signing = sealing.load_signing_key(db)
        if signing is None:
            raise UserError(f"no signing key for {db} yet: the first run creates {sealing.key_path(db)} "
                            f"(or set {sealing.SIGNING_KEY_ENV})")
        print(signing.public_key)
        return 0
    from .database import sqlite_file
    if sqlite_file(db) is not None and not Path(sqlite_file(db)).is_file():
        raise UserError(f"--db {db}: no database there")
    key, source = sealing.trusted_key(db, args.key)
    store = Store(db)
    try:
        if args.signal:
            bundle = sealing.signal_bundle(store, args.signal)
            if bundle is None:
                raise UserError(f"no signal {args.signal!r} in {db}")
            checks = sealing.check_bundle(bundle, key)
            ok = all(c.ok for c in checks)
            if args.json:
                print(json.dumps(bundle, indent=1))
                for c in checks:
                    if not c.ok:
                        print(f"FAIL signal {bundle['signal']} · {c.name}: {c.detail}", file=sys.stderr)
            else:
                print(report.proof_text(bundle, checks))
            return 0 if ok else 1
        v = sealing.verify_store(store, key, source)
    finally:
        store.close()
    print(json.dumps(v.as_dict(), indent=1) if args.json else report.verification_text(v.as_dict()))
    return 0 if v.ok else 1
