"""`python -m bot liqmap BTCUSDT --window 24h --out btc.png [--simulate]`: the estimated liquidation map as a PNG
and its text read.

Candles and open interest come from the exchange for the window plus a day of warm-up. Realised prints: with
`--simulate`, the simulator's force orders over the window (what the recorder would have stored had the bot been
running); otherwise those the running bot recorded in its database (`--db`), if any. Its parser: bot/cli.py.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path

from .config import Config, resolve_db_path
from .errors import UserError
from .exchange.binance import BinanceClient
from .exchange.force_orders import parse_force_order
from .liqmap import Params, Print, text
from .liqmap.view import WARM_UP_MS, build, window_ms
from .liqmap_feed import fetch_steps
from .symbols import with_quote


@asynccontextmanager
async def _market(args, cfg: Config):
    """(exchange root, a function giving realised prints for (symbol, since, until))."""
    if not args.simulate:
        yield args.exchange_url or cfg.exchange.base_url, lambda s, a, b: _recorded(args, cfg, s, a)
        return
    from .demo_market.binance_server import BinanceSimServer
    from .demo_market.liquidations import force_orders
    from .demo_market.market import MarketSimulator
    sim = MarketSimulator(n_symbols=args.sim_symbols, seed=args.sim_seed)
    server = BinanceSimServer(sim)
    url = await server.start()
    try:
        yield url, lambda s, a, b: [parse_force_order(e) for e in force_orders(sim, s, a, b)]
    finally:
        await server.stop()


def _recorded(args, cfg: Config, symbol: str, since: int) -> list[Print]:
    from .store import Store            # the database layer only when there is a database to read
    path = resolve_db_path(args.db, cfg)
    if not Path(path).is_file():
        return []
    store = Store(path)
    try:
        return store.liq_prints(symbol, since)
    finally:
        store.close()


async def _view(args, cfg: Config):
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
    v = asyncio.run(_view(args, cfg))
    from .liqmap_chart import render    # matplotlib (~0.5 s to import) once there is a map to draw, not for an error
    out = Path(args.out or f"{v.symbol.lower()}-liqmap-{args.window}.png")
    try:
        out.write_bytes(render(v))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write the PNG there: {e.strerror or e}") from None
    print(text(v.reading))
    print(v.footnote)
    print(f"wrote {out}")
    return 0
