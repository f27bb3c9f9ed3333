"""The LiqMap model: where leveraged positions opened over recent steps would be liquidated (pure, no I/O).

One step is one candle with its taker-buy volume and the open interest at its close. Per step, in order:

1. decay: every level keeps 0.5 ** (elapsed / half-life) of its notional (older estimates count less);
2. consumption: price traded through a level during the step -> its positions are gone (liquidated). A long
   level is consumed when the step's low reaches it, a short level when the high does;
3. OI fell -> every level shrinks by the share of open interest that closed (positions closed, not
   liquidated, are not told apart by side, so all shrink alike);
4. OI rose -> the increase is new positions opened at the step's volume-weighted price, split into longs and
   shorts by the step's taker buy/sell share, spread over the leverage mix, each placed at its isolated
   liquidation price (`liquidation_price`).

Levels are kept in log-spaced price bins (`bin_fraction` of price wide), so a bin is the same share of price
for BTC at $60,000 and for a coin at $0.02. The books balance exactly:
added - consumed - shrunk - decayed == total on the map (`LiqMap.ledger`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

Side = Literal["long", "short"]
CHANCE_RANGE = 0.02           # the accuracy's chance baseline looks at prices within ±2 % of each print


def liquidation_price(entry: float, leverage: float, mmr: float, side: Side) -> float:
    """Isolated-margin liquidation price: long P·(1 − 1/L)/(1 − mmr), short P·(1 + 1/L)/(1 + mmr).
    With a maintenance margin the liquidation comes before the margin is all gone: at mmr 0.4 % a 100× long
    is liquidated 0.60 % below its entry, not 1 %."""
    if side == "long":
        return entry * (1 - 1 / leverage) / (1 - mmr)
    return entry * (1 + 1 / leverage) / (1 + mmr)


@dataclass(frozen=True)
class Leverage:
    leverage: float
    share: float
    mmr: float


@dataclass(frozen=True)
class Params:
    """What the model assumes (config `liqmap:`; `Params.from_config`)."""
    leverage_mix: tuple[Leverage, ...]
    half_life_ms: int
    bin_fraction: float

    @classmethod
    def from_config(cls, cfg) -> "Params":
        """From a `bot.config.LiqMapConfig` (duck-typed: the model does not depend on the config module)."""
        return cls(tuple(Leverage(b.leverage, b.share, b.mmr) for b in cfg.leverage_mix),
                   int(cfg.half_life_hours * 3_600_000), cfg.bin_fraction)


@dataclass(frozen=True)
class Step:
    """One candle and the open interest (contracts, i.e. base units) at its close."""
    ts: int                   # open time, ms
    open: float
    high: float
    low: float
    close: float
    base_volume: float
    quote_volume: float
    taker_buy_quote: float
    oi: float | None          # None: no OI point for this step (no positions added or shrunk)

    @property
    def vwap(self) -> float:
        if self.base_volume > 0 and self.quote_volume > 0:
            return self.quote_volume / self.base_volume
        return (self.high + self.low + self.close) / 3

    @property
    def buy_share(self) -> float:
        """The taker-buy share of the step's volume: the share of new positions taken as longs."""
        if self.quote_volume <= 0:
            return 0.5
        return min(1.0, max(0.0, self.taker_buy_quote / self.quote_volume))


@dataclass(frozen=True)
class Print:
    """A realised liquidation (a force order). `side` is the position that was liquidated: Binance's S=SELL
    closes a long, S=BUY a short."""
    ts: int
    symbol: str
    side: Side
    price: float
    qty: float

    @property
    def notional(self) -> float:
        return self.price * self.qty


@dataclass
class Ledger:
    """Where the notional went (USD): added - consumed - shrunk - decayed = on the map."""
    added: float = 0.0
    consumed: float = 0.0
    shrunk: float = 0.0
    decayed: float = 0.0


@dataclass
class Accuracy:
    """Realised liquidation notional, and the part of it that fell inside the top estimated bands of its side
    (the map as it stood when the print's step began, one bin of tolerance either way)."""
    realised: float = 0.0
    inside: float = 0.0
    chance: float = 0.0       # notional-weighted share a print would hit at a random price within ±CHANCE_RANGE
    prints: int = 0

    @property
    def share(self) -> float | None:
        return self.inside / self.realised if self.realised > 0 else None

    @property
    def baseline(self) -> float | None:
        """What the same bands would catch by chance: the share of prices near each print that they cover."""
        return self.chance / self.realised if self.realised > 0 else None


@dataclass
class LiqMap:
    params: Params
    top_fraction: float = 0.25
    levels: dict[tuple[Side, int], float] = field(default_factory=dict)   # (side, bin) -> notional USD
    ledger: Ledger = field(default_factory=Ledger)
    accuracy: Accuracy = field(default_factory=Accuracy)
    last_ts: int | None = None
    last_oi: float | None = None
    last_price: float | None = None

    # ---- bins -------------------------------------------------------------------------------------
    def bin_of(self, price: float) -> int:
        return math.floor(math.log(price) / math.log1p(self.params.bin_fraction))

    def bin_price(self, b: int) -> float:
        """A bin's representative price (its geometric centre)."""
        return (1 + self.params.bin_fraction) ** (b + 0.5)

    def total(self) -> float:
        return sum(self.levels.values())

    # ---- one step ---------------------------------------------------------------------------------
    def step(self, s: Step, prints: Iterable[Print] = ()) -> None:
        if self.last_ts is not None and s.ts < self.last_ts:
            raise ValueError(f"steps must come in time order: {s.ts} after {self.last_ts}")
        self._score(prints)
        if self.last_ts is not None:
            self._decay(s.ts - self.last_ts)
        self._consume(s.low, s.high)
        if s.oi is not None:
            if self.last_oi is not None and s.oi < self.last_oi and self.last_oi > 0:
                self._shrink(s.oi / self.last_oi)
            elif self.last_oi is not None and s.oi > self.last_oi:
                self._open((s.oi - self.last_oi) * s.vwap, s.vwap, s.buy_share)
            self.last_oi = s.oi
        self.last_ts, self.last_price = s.ts, s.close

    def _decay(self, elapsed_ms: int) -> None:
        keep = 0.5 ** (elapsed_ms / self.params.half_life_ms)
        for k, v in self.levels.items():
            self.ledger.decayed += v * (1 - keep)
            self.levels[k] = v * keep

    def _consume(self, low: float, high: float) -> None:
        gone = [k for k in self.levels
                if (k[0] == "long" and self.bin_price(k[1]) >= low) or (k[0] == "short" and self.bin_price(k[1]) <= high)]
        for k in gone:
            self.ledger.consumed += self.levels.pop(k)

    def _shrink(self, keep: float) -> None:
        for k, v in self.levels.items():
            self.ledger.shrunk += v * (1 - keep)
            self.levels[k] = v * keep

    def _open(self, notional: float, entry: float, buy_share: float) -> None:
        for side, part in (("long", buy_share), ("short", 1 - buy_share)):
            for lev in self.params.leverage_mix:
                amount = notional * part * lev.share
                if amount <= 0:
                    continue
                k = (side, self.bin_of(liquidation_price(entry, lev.leverage, lev.mmr, side)))
                self.levels[k] = self.levels.get(k, 0.0) + amount
                self.ledger.added += amount

    # ---- reading the map --------------------------------------------------------------------------
    def top_bins(self, side: Side) -> set[int]:
        """The bins of one side in the top `top_fraction` by notional (at least one when the side has any)."""
        ranked = sorted(((v, b) for (s, b), v in self.levels.items() if s == side and v > 0), reverse=True)
        n = max(1, math.ceil(len(ranked) * self.top_fraction)) if ranked else 0
        return {b for _, b in ranked[:n]}

    def _score(self, prints: Iterable[Print]) -> None:
        tops = {side: self.top_bins(side) for side in ("long", "short")}
        reach = max(1, round(CHANCE_RANGE / self.params.bin_fraction))
        for p in prints:
            b = self.bin_of(p.price)
            top = tops[p.side]
            self.accuracy.realised += p.notional
            self.accuracy.prints += 1
            if top & {b - 1, b, b + 1}:
                self.accuracy.inside += p.notional
            covered = sum(1 for c in range(b - reach, b + reach + 1) if top & {c - 1, c, c + 1})
            self.accuracy.chance += p.notional * covered / (2 * reach + 1)


def run(steps: Iterable[Step], params: Params, prints: Iterable[Print] = (), *, top_fraction: float = 0.25,
        on_step: Callable[[Step, LiqMap], None] | None = None) -> LiqMap:
    """Run the model over steps (ascending) with the realised prints (any order); `on_step` sees the map after
    each step (the heatmap takes its columns from it)."""
    steps = list(steps)
    queue = sorted(prints, key=lambda p: p.ts)
    m = LiqMap(params, top_fraction)
    i = 0
    for n, s in enumerate(steps):
        end = steps[n + 1].ts if n + 1 < len(steps) else math.inf
        j = i
        while j < len(queue) and queue[j].ts < end:
            j += 1
        m.step(s, [p for p in queue[i:j] if p.ts >= s.ts])
        i = j
        if on_step is not None:
            on_step(s, m)
    return m
