"""CLI commands of closed signals: `signals` (the feed, open and closed) and `perf` (the performance report); their
parsers: bot/cli.py."""
from __future__ import annotations

from pathlib import Path

from . import report
from .cli import dumps, open_store
from .config import Config, load_config, resolve_db_path
from .errors import UserError
from .outcomes import performance_report
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
