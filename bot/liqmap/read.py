"""Reading a LiqMap: the nearest large cluster above and below price, the bias, the footnote (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from .model import LiqMap

FLOOR_NOTE = ("Realised prints are a floor: Binance's force-order stream sends at most one liquidation per symbol "
              "per second.")
BIAS_RANGE = 0.05          # the bias weighs the estimated notional within ±5 % of price
BIAS_RATIO = 1.25          # one side must hold this many times the other's notional to lean


@dataclass(frozen=True)
class Cluster:
    price: float
    notional: float          # estimated, USD
    distance: float          # fraction of price, positive
    side: str                # the positions that would be liquidated there: long (below) / short (above)


@dataclass(frozen=True)
class Reading:
    symbol: str
    price: float
    below: Cluster | None
    above: Cluster | None
    bias: str
    long_near: float         # estimated long-liquidation notional within BIAS_RANGE below price
    short_near: float


def read(m: LiqMap, symbol: str, price: float) -> Reading:
    """Nearest large cluster each side: the closest bin among that side's top `top_fraction` by notional."""
    def cluster(side: str) -> Cluster | None:
        found = [(abs(m.bin_price(b) - price), b) for b in m.top_bins(side)
                 if (m.bin_price(b) < price if side == "long" else m.bin_price(b) > price)]
        if not found:
            return None
        _, b = min(found)
        p = m.bin_price(b)
        return Cluster(p, m.levels[(side, b)], abs(p - price) / price, side)

    long_near = sum(v for (s, b), v in m.levels.items() if s == "long" and m.bin_price(b) >= price * (1 - BIAS_RANGE))
    short_near = sum(v for (s, b), v in m.levels.items() if s == "short" and m.bin_price(b) <= price * (1 + BIAS_RANGE))
    if long_near > BIAS_RATIO * short_near and long_near > 0:
        bias = "Long flush risk"
    elif short_near > BIAS_RATIO * long_near and short_near > 0:
        bias = "Short squeeze risk"
    else:
        bias = "Balanced"
    return Reading(symbol, price, cluster("long"), cluster("short"), bias, long_near, short_near)


def clusters_within(m: LiqMap, price: float, within: float) -> list[Cluster]:
    """The top-quartile (`top_fraction`) bins of either side within `within` (a fraction) of price, nearest first:
    what the opt-in watchlist rule "price within X % of a large cluster" fires on."""
    found = []
    for side in ("long", "short"):
        for b in m.top_bins(side):
            p = m.bin_price(b)
            d = abs(p - price) / price
            if d <= within and (p < price if side == "long" else p > price):
                found.append(Cluster(p, m.levels[(side, b)], d, side))
    return sorted(found, key=lambda c: (c.distance, c.side))


def money(x: float) -> str:
    """$1,788.03 / $0.1234 / $12.3M: prices keep their digits, notionals are rounded to a unit."""
    if x >= 1e9:
        return f"${x / 1e9:.1f}B"
    if x >= 1e6:
        return f"${x / 1e6:.1f}M"
    if x >= 1e3:
        return f"${x / 1e3:.0f}K"
    return f"${x:,.0f}"


def price_text(p: float) -> str:
    return f"${p:,.2f}" if p >= 100 else f"${p:,.4f}" if p >= 1 else f"${p:.6g}"


def text(r: Reading) -> str:
    """The text read, e.g. "With ETH at $1,788.03, the nearest large liquidation cluster below price sits at
    $1,776.65 (0.6% away, est. $12.0M of longs)."""
    base = r.symbol.removesuffix("USDT")
    lines = []
    for where, c, who in (("below", r.below, "longs"), ("above", r.above, "shorts")):
        if c is None:
            lines.append(f"No large estimated cluster {where} price.")
        else:
            lines.append(f"With {base} at {price_text(r.price)}, the nearest large liquidation cluster {where} price "
                         f"sits at {price_text(c.price)} ({c.distance * 100:.1f}% away, est. {money(c.notional)} of {who}).")
    lines.append(f"Bias: {r.bias} (est. {money(r.long_near)} of longs within {BIAS_RANGE:.0%} below, "
                 f"{money(r.short_near)} of shorts within {BIAS_RANGE:.0%} above).")
    return "\n".join(lines)


def footnote(m: LiqMap, window_label: str) -> str:
    """Accuracy, published with every map."""
    acc = m.accuracy
    if acc.share is None:
        hit = "no realised liquidations recorded in the window yet"
    else:
        hit = (f"{acc.share:.0%} of realised liquidation notional ({money(acc.realised)}, {acc.prints} prints) "
               f"fell inside the top-{m.top_fraction:.0%} estimated bands (by chance: {acc.baseline:.0%})")
    return f"Estimate, not an order book. {window_label}: {hit}. {FLOOR_NOTE}"
