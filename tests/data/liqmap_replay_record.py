"""Records tests/data/liqmap_replay.json: 28 hours of ETHUSDT from the simulator (seed 7, a fixed start) as Binance
sends them — klines rows, openInterestHist points, forceOrder events of the last 4 hours — for
tests/test_liqmap_replay.py. The map it gives is the test's; re-record only on purpose (and say why):

    python tests/data/liqmap_replay_record.py
"""
import asyncio
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bot.demo_market.binance_server import BinanceSimServer  # noqa: E402
from bot.demo_market.liquidations import force_orders  # noqa: E402
from bot.demo_market.market import MarketSimulator  # noqa: E402
from bot.exchange.binance import BinanceClient  # noqa: E402
from bot.config import ExchangeConfig  # noqa: E402

START_MS = 1_767_225_600_000          # 2026-01-01T00:00Z: the simulator's start
END_MS = START_MS - 98 * 3_600_000    # inside seed 7's ETH long unwind (an episode ~100 h before the start)
SYMBOL, STEP = "ETHUSDT", 300_000


async def main() -> None:
    sim = MarketSimulator(n_symbols=30, seed=7, start_ms=START_MS, held=True)
    since = END_MS - 28 * 3_600_000
    async with BinanceSimServer(sim) as server, BinanceClient(ExchangeConfig(), base_url=server.base_url) as c:
        klines = await c.klines(SYMBOL, "5m", limit=1000, start_time=since, end_time=END_MS)
        oi = await c.open_interest_hist(SYMBOL, "5m", limit=500, start_time=since + STEP, end_time=END_MS + STEP)
    events = force_orders(sim, SYMBOL, END_MS - 4 * 3_600_000, END_MS + STEP)
    out = {"symbol": SYMBOL, "window": "4h", "klines": klines, "openInterestHist": oi, "forceOrders": events}
    (HERE / "liqmap_replay.json").write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(klines)} klines, {len(oi)} OI points, {len(events)} force orders")


if __name__ == "__main__":
    asyncio.run(main())
