"""One map for one window: the model run over the stored steps, its heatmap grid, the read and the accuracy
footnote (pure; numpy holds the grid)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .model import LiqMap, Params, Print, Step, run
from .read import Reading, footnote, read

if TYPE_CHECKING:
    import numpy as np

WINDOWS_MS = {"1h": 3_600_000, "4h": 4 * 3_600_000, "12h": 12 * 3_600_000, "24h": 24 * 3_600_000,
              "1w": 7 * 24 * 3_600_000}
MAX_COLUMNS = 300                # heatmap columns at most (a week of 5-minute steps: every 7th step)
WARM_UP_MS = 24 * 3_600_000      # the model starts this long before the window: positions opened earlier count
PAD = 0.35                       # the price axis: the window's range plus this share of it each side ...
MIN_PAD = 0.02                   # ... and at least 2 % of price


@dataclass(frozen=True)
class Heatmap:
    """Estimated notional per price bin (rows b_lo..b_hi) and column (times: the steps drawn), per side."""
    times: list[int]
    b_lo: int
    b_hi: int
    longs: np.ndarray
    shorts: np.ndarray


@dataclass(frozen=True)
class View:
    symbol: str
    window: str
    map: LiqMap
    heatmap: Heatmap
    steps: list[Step]                   # inside the window
    prints: list[Print]                 # realised, inside the window
    reading: Reading
    footnote: str


def window_ms(label: str) -> int:
    try:
        return WINDOWS_MS[label.lower()]
    except KeyError:
        raise ValueError(f"unknown window {label!r}: one of {', '.join(WINDOWS_MS)}") from None


def build(symbol: str, window: str, steps: list[Step], prints: list[Print], params: Params,
          top_fraction: float = 0.25) -> View:
    """`steps` ascending (warm-up included); `prints` of the symbol. The window ends at the last step."""
    import numpy as np      # here, not at the top: `python -m bot` imports WINDOWS_MS for every command's parser
    if not steps:
        raise ValueError(f"{symbol}: no candles and open interest stored yet for the LiqMap")
    start = steps[-1].ts - window_ms(window)
    shown = [s for s in steps if s.ts >= start]
    inside = [p for p in prints if p.ts >= start]
    lo, hi = min(s.low for s in shown), max(s.high for s in shown)
    pad = max((hi - lo) * PAD, steps[-1].close * MIN_PAD)
    probe = LiqMap(params)
    b_lo, b_hi = probe.bin_of(max(lo - pad, lo * 0.5)), probe.bin_of(hi + pad)
    drawn = {s.ts for s in shown[::max(1, -(-len(shown) // MAX_COLUMNS))]}
    times: list[int] = []
    longs = np.zeros((b_hi - b_lo + 1, len(drawn)), dtype=np.float32)     # float32: a week fits in ~0.5 MB
    shorts = np.zeros_like(longs)

    def column(s: Step, m: LiqMap) -> None:
        if s.ts not in drawn:
            return
        k = len(times)
        times.append(s.ts)
        for (side, b), v in m.levels.items():
            if b_lo <= b <= b_hi:
                (longs if side == "long" else shorts)[b - b_lo, k] = v

    m = run(steps, params, inside, top_fraction=top_fraction, on_step=column)
    grid = Heatmap(times, b_lo, b_hi, longs, shorts)
    return View(symbol, window, m, grid, shown, inside, read(m, symbol, steps[-1].close), footnote(m, f"Last {window}"))
