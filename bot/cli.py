"""Command line: `python -m bot <command>`. `build_parser` is the table of subcommands; each names the module and
function that run it (`handler`), and `main` imports that module only once its subcommand is chosen: building the
parser (every invocation, `--help` too) loads none of the commands' dependencies (the database layer, the exchange
client, matplotlib; bench/cli_startup.py measures it, tests/test_cli_startup.py keeps it so)."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError
from .liqmap.view import WINDOWS_MS
from .logsetup import setup_logging

if TYPE_CHECKING:
    from .store import Store

DEFAULT_WATCHLISTS = "config/watchlists"


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero (`--limit -5` would silently hide the last five rows)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def utc_ms(text: str) -> int:
    """An ISO-8601 time (UTC unless it says otherwise) as epoch milliseconds, for argparse."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2026-03-29T01:30Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def web_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or just `PORT`, on 127.0.0.1) for `--web`; port 0 picks a free one."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:8080, or 0.0.0.0:8080 to be "
                                         "reachable from other machines)")
    return host, int(port)


def open_store(path: str) -> Store:
    """The SQLite store at `path`, or one clear line saying why it cannot be opened there."""
    from .store import DatabaseError, Store      # the database layer: only for the commands that open one
    if Path(path).is_dir():
        raise UserError(f"--db {path}: is a folder; give a file path such as {Path(path) / 'bot.db'}")
    try:
        return Store(path)
    except (OSError, sqlite3.Error, DatabaseError) as e:
        e = getattr(e, "orig", None) or e
        raise UserError(f"--db {path}: cannot open the database there: {getattr(e, 'strerror', None) or e}") from None


def dumps(payload) -> str:
    """JSON for people and programs: never a bare NaN/Infinity (not JSON; a ValueError here is a bug upstream)."""
    return json.dumps(payload, indent=1, ensure_ascii=False, allow_nan=False)


def add_market_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange-url", default=None, help="Binance USDⓈ-M API root (default: config, the real one)")
    p.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    p.add_argument("--input", default=None, help="score rows from a JSON file instead of the market (no network)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--simulate", action="store_true", help="use the built-in market simulator on loopback")
    p.add_argument("--sim-symbols", type=int, default=300, help=argparse.SUPPRESS)
    p.add_argument("--sim-seed", type=int, default=7, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Derivatives Pressure Bot")
    parser.add_argument("--config", default=None, help="config file (default config/bot.yaml, or BOT_CONFIG)")
    parser.add_argument("--log-level", default=os.environ.get("BOT_LOG_LEVEL"),
                        help="DEBUG, INFO, WARNING… (default: INFO for run, WARNING otherwise; or BOT_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True)

    # scan, score: bot/cli_scan.py
    scan = sub.add_parser("scan", help="run one cycle and print the ranked table")
    add_market_options(scan)
    scan.add_argument("--bias", choices=["all", "long", "short"], default="all")
    scan.add_argument("--limit", type=positive_int, default=None, help="show the top N only (N >= 1)")
    scan.set_defaults(handler="cli_scan:cmd_scan")

    score = sub.add_parser("score", help="explain one symbol's score")
    score.add_argument("symbol")
    add_market_options(score)
    score.set_defaults(handler="cli_scan:cmd_score")

    add_engine_commands(sub)
    add_signal_commands(sub)
    add_liqmap_command(sub)
    add_watchlist_commands(sub)
    return parser


def add_engine_commands(sub: argparse._SubParsersAction) -> None:
    """run, demo, signal, verify: bot/cli_run.py; check-config: bot/cli_check.py."""
    def engine_opts(p):
        p.add_argument("--db", default=None, help="SQLite path or database URL (also DATABASE_URL, BOT_DB_PATH)")
        p.add_argument("--watchlists", default=DEFAULT_WATCHLISTS, help="directory of per-user YAML watchlists "
                                                                         "(with a database URL they live in the "
                                                                         "database instead)")
        p.add_argument("--alert-log", default=os.environ.get("BOT_ALERT_LOG"),
                       help="also append delivered console alerts to this JSON-lines file")
        p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
        p.add_argument("--web", type=web_address, default=None, metavar="HOST:PORT",
                       help="serve the pressure page and JSON API there (run: default PORT from the environment on "
                            "127.0.0.1, else none; demo: 127.0.0.1 on a free port)")

    run = sub.add_parser("run", help="run the engine: scheduled cycles, alerts, chat adapters")
    run.add_argument("--exchange-url", default=None, help="Binance USDⓈ-M API root (default: config)")
    run.add_argument("--role", choices=["all", "engine", "delivery", "chat"], default=os.environ.get("BOT_ROLE", "all"),
                     help="which part this process runs (default all, or BOT_ROLE); roles apart need DATABASE_URL "
                          "(PostgreSQL): one engine and one Telegram poller at a time, any number of delivery "
                          "workers (docs/deploy.md)")
    engine_opts(run)
    run.set_defaults(handler="cli_run:cmd_run")

    demo = sub.add_parser("demo", help="offline demo: simulated market on loopback + the real engine")
    engine_opts(demo)
    demo.add_argument("--symbols", type=int, default=300)
    demo.add_argument("--speed", type=float, default=200.0, help="simulated seconds per wall second")
    demo.add_argument("--interval", type=float, default=1.5, help="wall seconds between cycles")
    demo.add_argument("--seed", type=int, default=7, help="the market's seed: same seed, same market")
    demo.add_argument("--start", type=utc_ms, default=None, metavar="UTC",
                      help="simulated start, e.g. 2026-03-29T01:30Z (default: now); the market is the same "
                           "for any start, only its timestamps move")
    demo.set_defaults(handler="cli_run:cmd_demo")

    sig = sub.add_parser("signal", help="print a signal's receipt: the exact inputs that fired it")
    sig.add_argument("id")
    sig.add_argument("--db", default=None)
    sig.set_defaults(handler="cli_run:cmd_signal")

    verify = sub.add_parser("verify", help="recompute every receipt, root, chain link and signature (exit 0/1)")
    verify.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    verify.add_argument("--signal", default=None, metavar="ID", help="check one signal: its receipt hash, inclusion "
                                                                     "proof and its cycle's signed manifest")
    verify.add_argument("--json", action="store_true", help="with --signal: the proof bundle anyone can check "
                                                            "(docs/receipts.md); without: the summary as JSON")
    verify.add_argument("--public-key", action="store_true", help="print the public key receipts are signed with")
    verify.add_argument("--key", default=None, metavar="HEX", help="the published public key to trust (default: "
                                                                   "the database's own signing key)")
    verify.set_defaults(handler="cli_run:cmd_verify")

    check = sub.add_parser("check-config", help="validate config/bot.yaml and every watchlist (exit 0/1)")
    check.add_argument("--watchlists", default=DEFAULT_WATCHLISTS)
    check.set_defaults(handler="cli_check:cmd_check_config", no_config=True)


def add_signal_commands(sub: argparse._SubParsersAction) -> None:
    """signals, perf, backtest: bot/cli_signals.py."""
    sig = sub.add_parser("signals", help="the signal feed: open and closed, with outcome, net bps and receipt hash")
    sig.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    sig.add_argument("--closed", action="store_true", help="closed signals only (TP1, SL or TIMEOUT)")
    sig.add_argument("--limit", type=positive_int, default=30)
    sig.add_argument("--json", action="store_true", help="machine-readable, with each closing record")
    sig.set_defaults(handler="cli_signals:cmd_signals")

    perf = sub.add_parser("perf", help="performance of closed signals: per symbol, per rule, follow and fade")
    perf.add_argument("symbol", nargs="?", default=None)
    perf.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    perf.add_argument("--window", type=positive_int, default=30, metavar="DAYS", help="days back from the last cycle")
    perf.add_argument("--json", action="store_true")
    perf.set_defaults(handler="cli_signals:cmd_perf")

    bt = sub.add_parser("backtest", help="replay stored cycles through the current score, rules and evaluation")
    bt.add_argument("--db", default=None, help="SQLite path (also BOT_DB_PATH)")
    bt.add_argument("--since", type=utc_ms, default=None, metavar="DATE", help="first cycle, e.g. 2026-03-29 "
                                                                               "(default: the oldest stored)")
    bt.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                    help="the settings to judge (default: the bot's --config)")
    bt.add_argument("--json", action="store_true")
    bt.set_defaults(handler="cli_signals:cmd_backtest")


def add_liqmap_command(sub: argparse._SubParsersAction) -> None:
    """liqmap: bot/cli_liqmap.py."""
    p = sub.add_parser("liqmap", help="estimated liquidation heatmap (PNG) and the nearest clusters")
    p.add_argument("symbol", help="e.g. BTCUSDT or btc")
    p.add_argument("--window", choices=list(WINDOWS_MS), default="24h")
    p.add_argument("--out", default=None, help="PNG path (default SYMBOL-liqmap-WINDOW.png)")
    p.add_argument("--exchange-url", default=None, help="Binance USDⓈ-M API root (default: config)")
    p.add_argument("--db", default=None, help="the running bot's SQLite (its recorded liquidation prints)")
    p.add_argument("--simulate", action="store_true", help="use the built-in market simulator on loopback")
    p.add_argument("--sim-symbols", type=int, default=30, help=argparse.SUPPRESS)
    p.add_argument("--sim-seed", type=int, default=7, help=argparse.SUPPRESS)
    p.set_defaults(handler="cli_liqmap:cmd_liqmap")


def add_watchlist_commands(sub: argparse._SubParsersAction) -> None:
    """watchlists import / export: bot/cli_watchlists.py."""
    wl = sub.add_parser("watchlists", help="move watchlists between a folder of YAML files and the database")
    wl.add_argument("action", choices=["import", "export"], help="import: folder -> database; export: database -> "
                                                                 "folder")
    wl.add_argument("directory", help="the folder of <user id>.yaml files")
    wl.add_argument("--db", default=None, help="database URL or SQLite path (default: DATABASE_URL, BOT_DB_PATH)")
    wl.set_defaults(handler="cli_watchlists:cmd_watchlists")


def loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """`(module.name,)` once the command has imported `module`, else `()` (an `except` that catches nothing): an
    error of a module the command never imported cannot have been raised, and importing it only to name it here
    would load the exchange client or the database layer for every command."""
    m = sys.modules.get(module)
    return (getattr(m, name),) if m is not None else ()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or ("INFO" if args.command == "run" else "WARNING"))
    from .config import ConfigError, load_config      # after parsing: `--help` and a mistyped option never need it
    module, _, name = args.handler.partition(":")
    command = getattr(importlib.import_module(f"{__package__}.{module}"), name)   # the chosen command's module only
    try:
        if getattr(args, "no_config", False):     # check-config reports config problems itself
            return command(args, None)
        cfg = load_config(args.config)
        if getattr(args, "exchange_url", None) is None and hasattr(args, "exchange_url"):
            args.exchange_url = cfg.exchange.base_url
        return command(args, cfg)
    except (UserError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except loaded("bot.cycle", "NothingScored") as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except loaded("bot.exchange.binance", "BinanceError") as e:
        print(f"error: exchange request failed: {e}", file=sys.stderr)
        return 1
    except (sqlite3.Error, *loaded("sqlalchemy.exc", "DBAPIError")) as e:     # DBAPIError: bot.store.DatabaseError
        print(f"error: database: {getattr(e, 'orig', None) or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:          # `python -m bot scan | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except OSError as e:             # a path the user gave (e.g. `run --db /no/such/dir/x.db`): one line, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
