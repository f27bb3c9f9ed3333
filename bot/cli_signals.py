"""CLI commands of closed signals: `signals` (the feed, open and closed) and `perf` (the performance report)."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import report
from .cli import dumps, open_store, positive_int
from .cli_run import utc_ms
from .config import Config, load_config, resolve_db_path
from .errors import UserError
from .symbols import normalize

WINDOWS = (30, 90, 180)


def _store(args, cfg: Config):
    db = resolve_db_path(args.db, cfg)
    if not Path(db).is_file():
        raise UserError(f"--db {db}: no database there (run the bot, or the demo, first)")
    return open_store(db)


def feed_item(g: dict) -> dict:
    o = g.get("outcome") or {}
    return {"id": g["id"], "ts": g["ts"], "symbol": g["symbol"], "rule": g["rule"], "kind": g["kind"],
            "score": g["score"], "bias": g["bias"], "status": o.get("status", "OPEN"),
            "follow_net_bps": (o.get("follow") or {}).get("net_bps"), "fade_net_bps": (o.get("fade") or {}).get("net_bps"),
            "record_hash": g.get("record_hash"), "outcome": o or None}


def cmd_signals(args, cfg: Config) -> int:
    store = _store(args, cfg)
    try:
        closed = store.closed_signals()[::-1] if args.closed else []
        sigs = closed[: args.limit] if args.closed else store.recent_signals(args.limit)
        total_open = len(store.open_signals())
    finally:
        store.close()
    if args.json:
        print(dumps([feed_item(g) for g in sigs]))
        return 0
    what = f"of {len(closed)} closed signals, latest opened first" if args.closed else "signals, newest first"
    print(f"{len(sigs)} {what} ({total_open} open in all); net bps after fees, slippage and funding; "
          "python -m bot signal ID for a receipt")
    if sigs:
        print(report.format_table(report.FEED_COLUMNS, report.feed_rows(sigs), numeric={6, 7}))
    return 0


def cmd_perf(args, cfg: Config) -> int:
    from .outcomes import performance_report     # the exchange client and the database: only when it runs
    store = _store(args, cfg)
    try:
        symbol = None
        if args.symbol:
            known = {g["symbol"] for g in store.signals_since(0)} | {r["symbol"] for r in store.latest_scores()[1]}
            symbol = normalize(args.symbol, known, cfg.universe.quote_asset)
            if symbol is None:
                raise UserError(f"unknown symbol {args.symbol!r} (no score and no signal for it in this database)")
        rep = performance_report(store, cfg, args.window, symbol)
    finally:
        store.close()
    print(dumps(rep) if args.json else report.perf_text(rep))
    return 0


def cmd_backtest(args, cfg: Config) -> int:
    from .backtest import replay
    if args.config_file:
        cfg = load_config(args.config_file)
    store = _store(args, cfg)
    try:
        since = args.since if args.since is not None else (store.cycle_times() or [0])[0]
        rep = replay(store, cfg, since)
    finally:
        store.close()
    if args.json:
        print(dumps(rep))
    else:
        print(rep["note"] + f" · {rep['cycles']} cycles · thresholds {', '.join(map(str, rep['thresholds']))}")
        print(report.perf_text(rep, label="BACKTEST"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sig = sub.add_parser("signals", help="the signal feed: open and closed, with outcome, net bps and receipt hash")
    sig.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    sig.add_argument("--closed", action="store_true", help="closed signals only (TP1, SL or TIMEOUT)")
    sig.add_argument("--limit", type=positive_int, default=30)
    sig.add_argument("--json", action="store_true", help="machine-readable, with each closing record")
    sig.set_defaults(func=cmd_signals)

    perf = sub.add_parser("perf", help="performance of closed signals: per symbol, per rule, follow and fade")
    perf.add_argument("symbol", nargs="?", default=None)
    perf.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    perf.add_argument("--window", type=positive_int, default=30, metavar="DAYS", help="days back from the last cycle")
    perf.add_argument("--json", action="store_true")
    perf.set_defaults(func=cmd_perf)

    bt = sub.add_parser("backtest", help="replay stored cycles through the current score, rules and evaluation")
    bt.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    bt.add_argument("--since", type=utc_ms, default=None, metavar="DATE", help="first cycle, e.g. 2026-03-29 "
                                                                               "(default: the oldest stored)")
    bt.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                    help="the settings to judge (default: the bot's --config)")
    bt.add_argument("--json", action="store_true")
    bt.set_defaults(func=cmd_backtest)
