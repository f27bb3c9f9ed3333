"""`python -m bot liqmap BTCUSDT --window 24h --out btc.png [--simulate]`: the estimated liquidation map as a PNG
and its text read.

Candles and open interest come from the exchange for the window plus a day of warm-up. Realised prints: with
`--simulate`, the simulator's force orders over the window (what the recorder would have stored had the bot been
running); otherwise those the running bot recorded in its database (`--db`), if any.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path

from .config import Config, resolve_db_path
from .errors import UserError
from .liqmap import Params, Print, text
from .liqmap.view import WARM_UP_MS, WINDOWS_MS, build, window_ms
from .symbols import with_quote

# The parser is built on every invocation (bot/cli.py): the exchange client, the database layer and matplotlib are
# imported by the functions below that use them, when `liqmap` runs.


@asynccontextmanager
async def _market(args, cfg: Config):
    """(exchange root, a function giving realised prints for (symbol, since, until))."""
    if not args.simulate:
        yield args.exchange_url or cfg.exchange.base_url, lambda s, a, b: _recorded(args, cfg, s, a)
        return
    from .demo_market.binance_server import BinanceSimServer
    from .demo_market.liquidations import force_orders
    from .demo_market.market import MarketSimulator
    from .exchange.force_orders import parse_force_order
    sim = MarketSimulator(n_symbols=args.sim_symbols, seed=args.sim_seed)
    server = BinanceSimServer(sim)
    url = await server.start()
    try:
        yield url, lambda s, a, b: [parse_force_order(e) for e in force_orders(sim, s, a, b)]
    finally:
        await server.stop()


def _recorded(args, cfg: Config, symbol: str, since: int) -> list[Print]:
    path = resolve_db_path(args.db, cfg)
    if not Path(path).is_file():
        return []
    from .store import Store
    store = Store(path)
    try:
        return store.liq_prints(symbol, since)
    finally:
        store.close()


async def _view(args, cfg: Config):
    from .exchange.binance import BinanceClient
    from .liqmap_feed import fetch_steps
    symbol = with_quote(args.symbol, cfg.universe.quote_asset)
    now = int(time.time() * 1000)
    since = now - window_ms(args.window) - WARM_UP_MS
    async with _market(args, cfg) as (url, prints_of), BinanceClient(cfg.exchange, base_url=url) as client:
        steps = await fetch_steps(client, symbol, cfg.liqmap.interval, since, now)
        prints = await asyncio.to_thread(prints_of, symbol, since, now)
    if not steps:
        raise UserError(f"{symbol}: the exchange returned no candles")
    return build(symbol, args.window, steps, prints, Params.from_config(cfg.liqmap), cfg.liqmap.top_fraction)


def cmd_liqmap(args, cfg: Config) -> int:
    from .liqmap_chart import render
    v = asyncio.run(_view(args, cfg))
    out = Path(args.out or f"{v.symbol.lower()}-liqmap-{args.window}.png")
    try:
        out.write_bytes(render(v))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write the PNG there: {e.strerror or e}") from None
    print(text(v.reading))
    print(v.footnote)
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("liqmap", help="estimated liquidation heatmap (PNG) and the nearest clusters")
    p.add_argument("symbol", help="e.g. BTCUSDT or btc")
    p.add_argument("--window", choices=list(WINDOWS_MS), default="24h")
    p.add_argument("--out", default=None, help="PNG path (default SYMBOL-liqmap-WINDOW.png)")
    p.add_argument("--exchange-url", default=None, help="Binance USDⓈ-M API root (default: config)")
    p.add_argument("--db", default=None, help="the running bot's SQLite (its recorded liquidation prints)")
    p.add_argument("--simulate", action="store_true", help="use the built-in market simulator on loopback")
    p.add_argument("--sim-symbols", type=int, default=30, help=argparse.SUPPRESS)
    p.add_argument("--sim-seed", type=int, default=7, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_liqmap)
