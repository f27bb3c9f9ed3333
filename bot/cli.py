"""Command line: `python -m bot <command>`. Each command is a small function; see `build_parser`."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sqlite3
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from . import report
from .config import Config, ConfigError, load_config, resolve_db_path
from .errors import UserError
from .logsetup import setup_logging
from .score import ScoreInputs, api_item, score_all
from .symbols import normalize, suggest

if TYPE_CHECKING:
    from .store import Store

# Every invocation (`--help` too) imports this module and builds every parser, so it imports at the top only what
# they and `scan --input` need; the database layer (SQLAlchemy) and the exchange client (httpx, aiohttp) are
# imported by the functions that open a database or talk to the exchange (bench/cli_startup.py; test_cli_startup.py).


INPUT_ROW = TypeAdapter(ScoreInputs)   # one row of `scan --input`, validated into the scorer's own type


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero (`--limit -5` would silently hide the last five rows)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def read_input_rows(path: str) -> list[ScoreInputs]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a JSON file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply (expected a list of row objects)") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of row objects, got {type(data).__name__}")
    rows = []
    for i, item in enumerate(data):
        try:
            rows.append(INPUT_ROW.validate_python(item))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'row'}: {x['msg']}" for x in e.errors())
            label = item.get("symbol", "?") if isinstance(item, dict) else repr(item)[:40]
            raise UserError(f"{path}: row {i} ({label}): {problems}") from None
        bad = [f.name for f in dataclasses.fields(rows[-1])
               if isinstance(getattr(rows[-1], f.name), float) and not math.isfinite(getattr(rows[-1], f.name))]
        if bad:
            raise UserError(f"{path}: row {i} ({rows[-1].symbol}): " +
                            "; ".join(f"{name}: not a finite number ({getattr(rows[-1], name)})" for name in bad))
    return rows


def open_store(path: str) -> Store:
    """The SQLite store at `path`, or one clear line saying why it cannot be opened there."""
    from .store import DatabaseError, Store
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


@asynccontextmanager
async def exchange_url(args):
    """The exchange root to use: --simulate starts the market simulator on loopback for this run."""
    if not getattr(args, "simulate", False):
        yield args.exchange_url
        return
    from .demo_market.binance_server import BinanceSimServer
    from .demo_market.market import MarketSimulator
    server = BinanceSimServer(MarketSimulator(n_symbols=args.sim_symbols, seed=args.sim_seed))
    url = await server.start()
    try:
        yield url
    finally:
        await server.stop()


async def _scan_market(args, cfg: Config) -> tuple[int, list[dict], dict]:
    from .cli_run import engine_last_cycle
    from .cycle import run_cycle
    from .exchange.binance import BinanceClient
    from .progress import progress_printer
    live = engine_last_cycle(resolve_db_path(args.db, cfg))    # a `run` holds the database: read, never compete
    if live is not None:
        return live
    store = open_store(resolve_db_path(args.db, cfg))
    try:
        async with exchange_url(args) as url, BinanceClient(cfg.exchange, base_url=url) as client:
            out = await run_cycle(cfg, client, store, progress=progress_printer("backfilling OI history"))
        store.prune_history(out.ts - cfg.history.retention_hours * 3_600_000)   # scan from cron stays bounded
        store.thin_scores(out.ts - int(cfg.history.scores_fine_hours * 3_600_000), cfg.history.scores_step_ms)
        return out.ts, out.result_dicts(), out.data.failed
    finally:
        store.close()


def cmd_scan(args, cfg: Config) -> int:
    if args.input:
        results = [r.as_dict() for r in score_all(read_input_rows(args.input), cfg.score)]
        ts, failed = int(time.time() * 1000), {}
    else:
        ts, results, failed = asyncio.run(_scan_market(args, cfg))
    shown = report.filter_bias(report.ranked(results), args.bias)[: args.limit]
    if args.json:
        print(dumps([dict(api_item(r, cfg.score), rank=r["rank"]) for r in shown]))
    else:
        print(report.summary(results, ts))
        print(report.format_table(report.TABLE_COLUMNS, report.table_rows(shown), {4: 42}))
    if failed:
        print(f"{len(failed)} symbol(s) failed this cycle:", file=sys.stderr)
        for sym, why in sorted(failed.items()):
            print(f"  {sym}: {why}", file=sys.stderr)
    return 0


def cmd_score(args, cfg: Config) -> int:
    if args.input:
        rows = {r.symbol: r for r in read_input_rows(args.input)}
        results = {r.symbol: r.as_dict() for r in score_all(list(rows.values()), cfg.score)}
        failed: dict[str, str] = {}
    else:
        _, scanned, failed = asyncio.run(_scan_market(args, cfg))
        results = {r["symbol"]: r for r in scanned}
    symbol = normalize(args.symbol, set(results) | set(failed), cfg.universe.quote_asset)
    if symbol in failed:
        raise UserError(f"{symbol}: no score this cycle: {failed[symbol]}")
    if symbol is None:
        hint = suggest(args.symbol, list(results), cfg.universe.quote_asset)
        raise UserError(f"unknown symbol {args.symbol!r}" + (f" — did you mean {hint}?" if hint else ""))
    result = results[symbol]
    print(dumps(api_item(result, cfg.score)) if args.json else report.explain(result))
    return 0


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

    scan = sub.add_parser("scan", help="run one cycle and print the ranked table")
    add_market_options(scan)
    scan.add_argument("--bias", choices=["all", "long", "short"], default="all")
    scan.add_argument("--limit", type=positive_int, default=None, help="show the top N only (N >= 1)")
    scan.set_defaults(func=cmd_scan)

    score = sub.add_parser("score", help="explain one symbol's score")
    score.add_argument("symbol")
    add_market_options(score)
    score.set_defaults(func=cmd_score)

    from . import cli_run
    cli_run.register(sub)
    from . import cli_signals
    cli_signals.register(sub)
    from . import cli_liqmap
    cli_liqmap.register(sub)
    from . import cli_watchlists
    cli_watchlists.register(sub)
    return parser


def loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """`(module.name,)` when a command has imported `module`, else `()` (an `except` of it catches nothing): an
    error of a module the command never imported cannot have been raised, and importing it only to name it in an
    `except` would load the exchange client or the database layer for every command."""
    m = sys.modules.get(module)
    return (getattr(m, name),) if m is not None else ()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or ("INFO" if args.command == "run" else "WARNING"))
    try:
        if getattr(args, "no_config", False):     # check-config reports config problems itself
            return args.func(args, None)
        cfg = load_config(args.config)
        if getattr(args, "exchange_url", None) is None and hasattr(args, "exchange_url"):
            args.exchange_url = cfg.exchange.base_url
        return args.func(args, cfg)
    except (UserError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except loaded("bot.cycle", "NothingScored") as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except loaded("bot.exchange.binance", "BinanceError") as e:
        print(f"error: exchange request failed: {e}", file=sys.stderr)
        return 1
    except (sqlite3.Error, *loaded("sqlalchemy.exc", "DBAPIError")) as e:     # bot.store.DatabaseError
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
