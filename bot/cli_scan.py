"""`python -m bot scan` / `score`: one cycle's ranked table, one symbol's score explained; from the market, or from
a JSON file of rows (`--input`: no network, no database, so none of their layers is imported for it)."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from . import report
from .cli import dumps, open_store
from .config import Config, resolve_db_path
from .errors import UserError
from .score import ScoreInputs, api_item, score_all
from .symbols import normalize, suggest


INPUT_ROW = TypeAdapter(ScoreInputs)   # one row of `scan --input`, validated into the scorer's own type


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


def scan_market(args, cfg: Config) -> tuple[int, list[dict], dict]:
    """One cycle of the market (or the running bot's last one): (ts, results, failed). The exchange client, the
    database layer and asyncio are imported here, not at the top: `--input` needs none of them."""
    import asyncio
    return asyncio.run(_scan_market(args, cfg))


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
        ts, results, failed = scan_market(args, cfg)
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
        _, scanned, failed = scan_market(args, cfg)
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
